#!/bin/sh
# A newer Kamailio for dmq_rs on a Debian 12 machine: a Debian root made with
# debootstrap, and Debian's source package of the kamailio installed in it
# (for its headers). Both live in the git-ignored cache.
#
#   scripts/debian-root.sh RELEASE [CACHE_DIR]
#
#   RELEASE 6.0: Debian 13 (trixie) in CACHE_DIR/debian13-root
#   RELEASE 6.1: Debian testing (forky) in CACHE_DIR/debian-testing-root
#           (Debian 12's debootstrap has no forky script: sid's serves)
#
# Prints two lines: the root's path, then the source tree's path.
# Idempotent: a root that exists and runs kamailio RELEASE.x is kept as it is,
# a fetched source tree is kept. The version is the root's: when the suite
# no longer carries RELEASE (testing moves on), this says so and fails.
# The mirrors are those the machine's own apt sources name for Debian and its
# security archive (nothing else is used). Both are made in a temporary
# directory and moved into place when complete, so an interrupted run is
# never mistaken for a finished one.
set -eu

die() { echo "debian-root.sh: $*" >&2; exit 1; }
say() { echo "debian-root.sh: $*" >&2; }

release=${1:-}
[ $# -gt 0 ] && shift
case "$release" in
    6.0) SUITE=trixie; SCRIPT=trixie; NAME=debian13-root; WHAT="Debian 13"; UPDATES=yes ;;
    6.1) SUITE=forky; SCRIPT=sid; NAME=debian-testing-root; WHAT="Debian testing ($SUITE)"; UPDATES=no ;;
    *) die "usage: debian-root.sh 6.0|6.1 [CACHE_DIR]" ;;
esac
PACKAGES="kamailio,kamailio-extra-modules,kamailio-utils-modules,kamailio-presence-modules,kamailio-lua-modules,kamailio-tls-modules,sip-tester"
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

here=$(cd "$(dirname "$0")" && pwd)
cache=${1:-$here/../.cache}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
root="$cache/$NAME"

# The deb mirrors of the machine's apt sources: the URI serving the host's
# own release (e.g. bookworm) and the one serving its security suite.
# Reads both the one-line format and deb822 .sources files.
host_codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
[ -n "$host_codename" ] || die "cannot read VERSION_CODENAME from /etc/os-release"
mirror_for() { # $1: suite the URI must serve
    {
        for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
            [ -f "$f" ] || continue
            # deb [opts] URI suite comps...
            sed -n 's/^[[:space:]]*deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]\+\)[[:space:]]\+\([^[:space:]]\+\).*/\2 \3/p' "$f"
        done
        for f in /etc/apt/sources.list.d/*.sources; do
            [ -f "$f" ] || continue
            awk '
                function flush() {
                    if (types ~ /(^| )deb( |$)/ && enabled != "no")
                        for (i = 1; i <= nu; i++) for (j = 1; j <= ns; j++) print u[i], s[j]
                    types = ""; enabled = ""; nu = 0; ns = 0
                }
                /^[[:space:]]*$/ { flush(); next }
                /^#/ { next }
                tolower($1) == "types:" { $1 = ""; types = $0 " " }
                tolower($1) == "enabled:" { enabled = tolower($2) }
                tolower($1) == "uris:" { for (i = 2; i <= NF; i++) u[++nu] = $i }
                tolower($1) == "suites:" { for (i = 2; i <= NF; i++) s[++ns] = $i }
                END { flush() }
            ' "$f"
        done
    } | awk -v want="$1" '$2 == want { print $1; exit }'
}
mirror=$(mirror_for "$host_codename")
[ -n "$mirror" ] || die "no deb entry for $host_codename in the apt sources: cannot tell which Debian mirror to use"
security=$(mirror_for "$host_codename-security")

# The kamailio version a root runs ("6.1.5"), empty when none.
root_version() {
    [ -x "$1/usr/sbin/kamailio" ] || return 0
    chroot "$1" /usr/sbin/kamailio -v 2>/dev/null | sed -n 's/^version: kamailio \([^ ]*\) .*/\1/p'
}
root_ok() {
    case "$(root_version "$1")" in "$release".*) return 0 ;; *) return 1 ;; esac
}

# Leftovers of an interrupted run: debootstrap may have left /proc or /sys
# mounted in its temporary root. Unmount (deepest first), then delete.
clean_tmp() {
    for t in "$root".tmp.*; do
        [ -e "$t" ] || continue
        awk -v p="$t/" 'index($2, p) == 1 { print $2 }' /proc/mounts | sort -r |
            while read -r m; do umount -l "$m" 2>/dev/null || true; done
        rm -rf "$t"
    done
}

if ! root_ok "$root"; then
    [ "$(id -u)" = 0 ] || die "building the $WHAT root needs root (debootstrap, chroot)"
    command -v debootstrap >/dev/null || {
        say "installing debootstrap"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap >&2
    }
    script=/usr/share/debootstrap/scripts/$SCRIPT
    [ -f "$script" ] || die "this debootstrap has no $SCRIPT script"
    # Debian 12's first keyring predates the Debian 13 archive keys (which
    # sign testing as well).
    [ -f /usr/share/keyrings/debian-archive-trixie-stable.gpg ] || {
        say "updating debian-archive-keyring (for the Debian 13 keys)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debian-archive-keyring >&2
    }
    clean_tmp
    tmp="$root.tmp.$$"
    log="$cache/debootstrap-$SUITE.log"
    say "debootstrap $SUITE into $root from $mirror (about a minute)"
    debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$tmp" "$mirror" "$script" >"$log" 2>&1 || {
        tail -20 "$log" >&2
        clean_tmp
        die "debootstrap failed (log: $log)"
    }
    # The root's own apt sources, for anyone who wants to update it by hand.
    {
        echo "deb $mirror $SUITE main"
        [ "$UPDATES" = no ] || echo "deb $mirror $SUITE-updates main"
        [ "$UPDATES" = no ] || [ -z "$security" ] || echo "deb $security $SUITE-security main"
    } > "$tmp/etc/apt/sources.list"
    root_ok "$tmp" || {
        got=$(root_version "$tmp")
        clean_tmp
        die "$WHAT carries kamailio ${got:-(none)}, not $release.x: dmq_rs's KAMAILIO=$release build needs headers and a shim checked against $release (see doc/releases-and-upgrades.md)"
    }
    rm -rf "$root"
    mv "$tmp" "$root"
fi

# A root made before a package joined PACKAGES gets it now, at the version
# of the kamailio it has (a newer one from the security archive would
# upgrade kamailio itself under the cached source tree).
for p in $(echo "$PACKAGES" | tr ',' ' '); do
    chroot "$root" dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" && continue
    [ "$(id -u)" = 0 ] || die "the $WHAT root lacks $p; run as root to add it"
    v=$(chroot "$root" dpkg-query -W -f='${Version}' kamailio)
    case $p in kamailio*) want="$p=$v" ;; *) want=$p ;; esac
    say "adding $want to $root"
    chroot "$root" sh -c "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $want" >&2 ||
        die "cannot install $want in $root"
done

# Debian's source package of the kamailio in the root, from deb-src
# entries for the same mirrors, through an apt configuration of its own
# (the machine's apt sources stay as they are): kamailio-headers/fetch.sh.
version=$(chroot "$root" dpkg-query -W -f='${Version}' kamailio) || die "no kamailio package in $root"
apt="$cache/apt-$SUITE"
mkdir -p "$apt"
{
    echo "deb-src [signed-by=$KEYRING] $mirror $SUITE main"
    [ "$UPDATES" = no ] || echo "deb-src [signed-by=$KEYRING] $mirror $SUITE-updates main"
    [ "$UPDATES" = no ] || [ -z "$security" ] || echo "deb-src [signed-by=$KEYRING] $security $SUITE-security main"
} > "$apt/sources.list.new"
if cmp -s "$apt/sources.list.new" "$apt/sources.list"; then rm "$apt/sources.list.new"; else mv "$apt/sources.list.new" "$apt/sources.list"; fi
fetch="$here/../kamailio-headers/fetch.sh"
# A pinned tree taken before for this version (delete the marker to retry
# the archive).
marker="$cache/kamailio-$version.pinned"
if [ -f "$marker" ] && [ -f "$(cat "$marker")/src/core/sr_module.h" ]; then
    tree=$(cat "$marker")
elif ! tree=$("$fetch" "$cache" "$version" "$apt/sources.list"); then
    # The archive lists the source but does not serve it (or no longer):
    # a pinned source of the same upstream series, if there is one.
    upstream=${version#*:}
    upstream=${upstream%-*}
    series=${upstream%.*}
    pin=$(awk -v s="$series" '!/^#/ && NF >= 2 { u = $1; sub(/^[0-9]*:/, "", u); sub(/-[^-]*$/, "", u); if (index(u, s ".") == 1) print $1, $2 }' \
        "$here/../kamailio-headers/pinned-sources" | tail -1)
    [ -n "$pin" ] || die "cannot fetch the source of kamailio $version, and kamailio-headers/pinned-sources has none of $series.x"
    say "the archive does not serve kamailio $version's source: taking the headers of the pinned kamailio ${pin% *} (kamailio-headers/pinned-sources)"
    # shellcheck disable=SC2086
    tree=$("$fetch" "$cache" ${pin% *} "$apt/sources.list" "$mirror/pool/main/k/kamailio" ${pin#* }) ||
        die "cannot fetch the source of kamailio $version nor the pinned ${pin% *}"
    echo "$tree" > "$marker"
fi

echo "$root"
echo "$tree"
