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
PACKAGES="kamailio,kamailio-extra-modules,kamailio-utils-modules,kamailio-presence-modules,kamailio-lua-modules,sip-tester"
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

# Debian 13's source package of the kamailio in the root, from deb-src
# entries for the same mirrors, through an apt configuration of its own
# (the machine's apt sources stay as they are).
version=$(chroot "$root" dpkg-query -W -f='${Version}' kamailio) || die "no kamailio package in $root"
upstream=${version#*:}
upstream=${upstream%-*}
tree="$cache/kamailio-$version/kamailio-$upstream"
check_tree() {
    [ -f "$1/src/core/sr_module.h" ] && [ -f "$1/src/modules/tm/tm_load.h" ]
}
# $1: a directory holding the .dsc and the archives it names (except
# detached signatures); $2: the directory to unpack into, inside $1.
unpack_by_hand() (
    cd "$1" || exit 1
    dsc=$(ls ./*.dsc 2>/dev/null | head -1)
    [ -n "$dsc" ] || exit 1
    orig="" debian=""
    for name in $(awk '/^Checksums-Sha256:/ { on = 1; next } /^[^ ]/ { on = 0 } on { print $3 }' "$dsc"); do
        case "$name" in *.asc) continue;; esac
        want=$(awk -v n="$name" '/^Checksums-Sha256:/ { on = 1; next } /^[^ ]/ { on = 0 } on && $3 == n { print $1 }' "$dsc")
        have=$(sha256sum "$name" 2>/dev/null | cut -d' ' -f1)
        [ -n "$want" ] && [ "$want" = "$have" ] || { echo "debian13-root.sh: $name missing or its checksum differs" >&2; exit 1; }
        case "$name" in
            *.orig.tar.*) orig=$name ;;
            *.debian.tar.*) debian=$name ;;
        esac
    done
    [ -n "$orig" ] && [ -n "$debian" ] || exit 1
    rm -rf "$2" unpack.tmp
    mkdir unpack.tmp
    tar -xf "$orig" -C unpack.tmp
    # the orig tarball holds one top directory
    top=$(ls unpack.tmp)
    [ "$(echo "$top" | wc -l)" = 1 ] || exit 1
    mv "unpack.tmp/$top" "$2"
    rmdir unpack.tmp
    tar -xf "$debian" -C "$2"
    if [ -f "$2/debian/patches/series" ]; then
        sed -e 's/#.*//' "$2/debian/patches/series" | while read -r p _; do
            [ -n "$p" ] || continue
            patch -d "$2" -p1 -s -N < "$2/debian/patches/$p" || exit 1
        done
    fi
)

if ! check_tree "$tree"; then
    command -v dpkg-source >/dev/null || die "dpkg-source is missing (apt-get install dpkg-dev)"
    apt="$cache/apt-$SUITE"
    mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/parts" "$apt/prefs"
    {
        echo "deb-src [signed-by=$KEYRING] $mirror $SUITE main"
        echo "deb-src [signed-by=$KEYRING] $mirror $SUITE-updates main"
        [ -z "$security" ] || echo "deb-src [signed-by=$KEYRING] $security $SUITE-security main"
    } > "$apt/sources.list"
    set -- -o Dir::Etc::SourceList="$apt/sources.list" -o Dir::Etc::SourceParts="$apt/parts" \
        -o Dir::Etc::PreferencesParts="$apt/prefs" -o Dir::Etc::Preferences="$apt/prefs/none" \
        -o Dir::State::Lists="$apt/lists" -o Dir::Cache="$apt/cache" -o APT::Get::List-Cleanup=0
    say "fetching Debian source of kamailio $version"
    apt-get "$@" update -q >&2 || die "apt-get update ($SUITE deb-src) failed"
    work="$cache/kamailio-$version"
    rm -rf "$work.tmp"
    mkdir -p "$work.tmp"
    (cd "$work.tmp" && apt-get "$@" source -q "kamailio=$version" >&2) || {
        # A mirror without the upstream signature (.orig.tar.gz.asc) makes
        # apt-get source fail after fetching everything else: check those
        # files against the .dsc and unpack them by hand.
        say "apt-get source failed; unpacking the fetched files by hand"
        unpack_by_hand "$work.tmp" "kamailio-$upstream" || die "apt-get source kamailio=$version failed"
    }
    rm -rf "$work"
    mv "$work.tmp" "$work"
    check_tree "$tree" || die "unpacked source has no $tree/src/core/sr_module.h"
fi

echo "$root"
echo "$tree"
