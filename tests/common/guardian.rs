//! What an interrupted run leaves behind, removed. A test stops its nodes,
//! helpers and namespaces itself (Drop), but a run that is interrupted
//! (Ctrl-C, `timeout` killing `make test`, SIGKILL) never gets there. So the
//! first process group or namespace a test binary makes starts a guardian:
//! a small shell process in a process group of its own (the terminal's
//! Ctrl-C and `timeout`'s signal do not reach it) that reads, on a pipe
//! from this process, what is made (`add pg <pgid>`, `add netns <name>`)
//! and what was removed already (`del …`). When the pipe closes (this
//! process ended, however it ended) it kills the process groups still
//! listed and deletes the namespaces still listed: only what this run made
//! and did not remove, never anything by name pattern.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};

const SCRIPT: &str = r#"
trap '' INT TERM HUP PIPE
list=$(mktemp) || exit 1
while IFS=' ' read -r op kind id; do
    case "$op" in
        add) printf '%s %s\n' "$kind" "$id" >> "$list" ;;
        del) grep -vxF "$kind $id" "$list" > "$list.new"; mv "$list.new" "$list" ;;
    esac
done
while read -r kind id; do
    [ "$kind" = pg ] && kill -9 "-$id" 2>/dev/null
done < "$list"
sleep 0.3
tac "$list" | while read -r kind id; do
    [ "$kind" = netns ] && ip netns del "$id" 2>/dev/null
done
rm -f "$list" "$list.new"
"#;

fn pipe() -> Option<&'static Mutex<ChildStdin>> {
    static PIPE: OnceLock<Option<Mutex<ChildStdin>>> = OnceLock::new();
    PIPE.get_or_init(|| {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", SCRIPT]).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null()).process_group(0);
        match cmd.spawn() {
            // The child is never waited for: it outlives this process.
            Ok(mut child) => child.stdin.take().map(Mutex::new),
            Err(e) => {
                eprintln!("no guardian for an interrupted run (sh: {e}): a killed run may leave processes behind");
                None
            }
        }
    })
    .as_ref()
}

fn tell(line: &str) {
    if let Some(pipe) = pipe() {
        let mut pipe = pipe.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(pipe, "{line}");
        let _ = pipe.flush();
    }
}

/// A process group this run made (its leader's pid): killed if the run
/// ends before [`released_group`].
pub fn watch_group(pgid: u32) {
    tell(&format!("add pg {pgid}"));
}

/// The group is gone (killed and reaped by the test).
pub fn released_group(pgid: u32) {
    tell(&format!("del pg {pgid}"));
}

/// A network namespace this run made: deleted if the run ends before
/// [`released_netns`].
pub fn watch_netns(name: &str) {
    tell(&format!("add netns {name}"));
}

/// The namespace is deleted already.
pub fn released_netns(name: &str) {
    tell(&format!("del netns {name}"));
}
