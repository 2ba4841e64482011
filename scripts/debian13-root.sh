#!/bin/sh
# Kamailio 6.0 for dmq_rs on a Debian 12 machine: a Debian 13 (trixie) root
# made with debootstrap, and Debian 13's source package of the kamailio
# installed in it (for its headers). Both live in the git-ignored cache.
#
#   scripts/debian13-root.sh [CACHE_DIR]
#
# Prints two lines: the root's path, then the source tree's path.
# Idempotent: a root that exists and runs kamailio 6.0.x is kept as it is, a
# fetched source tree is kept. The mirrors are those the machine's own apt
# sources name for Debian and its security archive (nothing else is used).
# Both are made in a temporary directory and moved into place when complete,
# so an interrupted run is never mistaken for a finished one.
set -eu

die() { echo "debian13-root.sh: $*" >&2; exit 1; }
say() { echo "debian13-root.sh: $*" >&2; }

SUITE=trixie
PACKAGES="kamailio,kamailio-extra-modules,kamailio-utils-modules,kamailio-presence-modules,kamailio-lua-modules,kamailio-tls-modules,sip-tester"
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

here=$(cd "$(dirname "$0")" && pwd)
cache=${1:-$here/../.cache}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
root="$cache/debian13-root"

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

root_ok() {
    [ -x "$1/usr/sbin/kamailio" ] || return 1
    chroot "$1" /usr/sbin/kamailio -v 2>/dev/null | grep -q '^version: kamailio 6\.0\.'
}

# Leftovers of an interrupted run: debootstrap may have left /proc or /sys
# mounted in its temporary root. Unmount (deepest first), then delete.
clean_tmp() {
    for t in "$cache"/debian13-root.tmp.*; do
        [ -e "$t" ] || continue
        awk -v p="$t/" 'index($2, p) == 1 { print $2 }' /proc/mounts | sort -r |
            while read -r m; do umount -l "$m" 2>/dev/null || true; done
        rm -rf "$t"
    done
}

if ! root_ok "$root"; then
    [ "$(id -u)" = 0 ] || die "building the Debian 13 root needs root (debootstrap, chroot)"
    command -v debootstrap >/dev/null || {
        say "installing debootstrap"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap >&2
    }
    [ -f /usr/share/debootstrap/scripts/$SUITE ] || die "this debootstrap does not know $SUITE"
    # Debian 12's first keyring predates the Debian 13 archive keys.
    [ -f /usr/share/keyrings/debian-archive-$SUITE-stable.gpg ] || {
        say "updating debian-archive-keyring (for the $SUITE keys)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debian-archive-keyring >&2
    }
    clean_tmp
    tmp="$cache/debian13-root.tmp.$$"
    say "debootstrap $SUITE into $root from $mirror (about a minute)"
    debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$tmp" "$mirror" >"$cache/debootstrap.log" 2>&1 || {
        tail -20 "$cache/debootstrap.log" >&2
        clean_tmp
        die "debootstrap failed (log: $cache/debootstrap.log)"
    }
    # The root's own apt sources, for anyone who wants to update it by hand.
    {
        echo "deb $mirror $SUITE main"
        echo "deb $mirror $SUITE-updates main"
        [ -z "$security" ] || echo "deb $security $SUITE-security main"
    } > "$tmp/etc/apt/sources.list"
    root_ok "$tmp" || { clean_tmp; die "the new root has no kamailio 6.0.x"; }
    rm -rf "$root"
    mv "$tmp" "$root"
fi

# A root made before a package joined PACKAGES gets it now, at the version
# of the kamailio it has (a newer one from the security archive would
# upgrade kamailio itself under the cached source tree).
for p in $(echo "$PACKAGES" | tr ',' ' '); do
    chroot "$root" dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" && continue
    [ "$(id -u)" = 0 ] || die "the Debian 13 root lacks $p; run as root to add it"
    v=$(chroot "$root" dpkg-query -W -f='${Version}' kamailio)
    case $p in kamailio*) want="$p=$v" ;; *) want=$p ;; esac
    say "adding $want to $root"
    chroot "$root" sh -c "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $want" >&2 ||
        die "cannot install $want in $root"
done

# Debian 13's source package of the kamailio in the root, from deb-src
# entries for the same mirrors, through an apt configuration of its own
# (the machine's apt sources stay as they are): kamailio-headers/fetch.sh.
version=$(chroot "$root" dpkg-query -W -f='${Version}' kamailio) || die "no kamailio package in $root"
apt="$cache/apt-$SUITE"
mkdir -p "$apt"
{
    echo "deb-src [signed-by=$KEYRING] $mirror $SUITE main"
    echo "deb-src [signed-by=$KEYRING] $mirror $SUITE-updates main"
    [ -z "$security" ] || echo "deb-src [signed-by=$KEYRING] $security $SUITE-security main"
} > "$apt/sources.list.new"
if cmp -s "$apt/sources.list.new" "$apt/sources.list"; then rm "$apt/sources.list.new"; else mv "$apt/sources.list.new" "$apt/sources.list"; fi
tree=$("$here/../kamailio-headers/fetch.sh" "$cache" "$version" "$apt/sources.list") || die "cannot fetch the source of kamailio $version"

echo "$root"
echo "$tree"
