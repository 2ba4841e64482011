//! A test that cannot run here (no network namespaces without root, a
//! release's root or module missing) fails with its reason, unless the run
//! opts out of that reason explicitly: `DMQ_RS_ALLOW_SKIP` is a
//! comma-separated list of reasons' words — `netns`, `6.0`, `6.1`, `host`
//! (the releases), `tls-5.6` ([`tls_left_out`]), or `all`. An opted-out test prints `ignored: <reason>`
//! on stderr and returns. (libtest cannot mark a test ignored at run time,
//! so it still counts such a test "ok": the opt-out is the run's, visible
//! in its command line and in each test's output.)

use super::Release;

/// Writes `line` to the run's stderr past libtest's output capture (which
/// takes `eprintln!`'s output of a passing test): a test that does not run
/// says so in the run's output, not only when it fails.
pub fn say_uncaptured(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The words `DMQ_RS_ALLOW_SKIP` lists.
fn allowed() -> Vec<String> {
    std::env::var("DMQ_RS_ALLOW_SKIP").unwrap_or_default().split(',').map(|w| w.trim().to_string()).filter(|w| !w.is_empty()).collect()
}

/// The test cannot run for `reason` (opt-out word `word`): fails, or, when
/// `DMQ_RS_ALLOW_SKIP` lists `word` (or `all`), prints `ignored: …` and
/// returns, for the caller to return at once. The line is written past
/// libtest's capture ([`say_uncaptured`]).
pub fn cannot_run(word: &str, reason: &str) {
    let allowed = allowed();
    if allowed.iter().any(|w| w == word || w == "all") {
        say_uncaptured(&format!("ignored: {reason} (DMQ_RS_ALLOW_SKIP={})", allowed.join(",")));
        return;
    }
    panic!("cannot run: {reason}\n(to let this run pass over it, set DMQ_RS_ALLOW_SKIP={word}; the test then prints \"ignored\")");
}

/// Whether every release in `releases` can run here (its Kamailio and a
/// dmq_rs build for it); for the first that cannot, [`cannot_run`] with the
/// release's name as the word (so false only when opted out).
pub fn releases_available(releases: &[Release]) -> bool {
    for &release in releases {
        if let Err(reason) = release.available() {
            cannot_run(release.name(), &reason);
            return false;
        }
    }
    true
}

/// Whether DMQ over TLS is left out of this run: on Kamailio 5.6.3 with
/// OpenSSL 3 (Debian 12) a node's TLS processes crash now and then, at
/// startup as under connection churn (`qm_free(): BUG: freeing already
/// freed pointer … tls_init.c`, kamailio/kamailio#3791, fixed by
/// `tls_threads_mode` in 5.8+); doc/security.md advises TCP on a private
/// network on 5.6, which every TLS test's TCP twin covers. `make test`
/// filters the TLS tests out of its 5.6 pass (`--skip`, so libtest never
/// counts them passed); one run here anyway fails with the reason, unless
/// `DMQ_RS_ALLOW_SKIP` names `tls-5.6` (then true: the caller returns).
/// Every TLS test runs on 6.0 and 6.1.
pub fn tls_left_out(test: &str) -> bool {
    if super::Release::suite() != super::Release::Host {
        return false;
    }
    cannot_run(
        "tls-5.6",
        &format!(
            "{test}: Kamailio 5.6.3's TLS with OpenSSL 3 crashes now and then (kamailio/kamailio#3791); doc/security.md \
             advises DMQ over TCP on 5.6, which this test's TCP twin runs; it runs over TLS on 6.0 and 6.1 (make test filters it \
             out of the 5.6 pass)"
        ),
    );
    true
}
