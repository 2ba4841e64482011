#!/bin/sh
# Print the path of a Kamailio source tree that matches the installed kamailio
# package, fetching Debian's source package into the cache when it is missing.
#
#   kamailio-headers/fetch.sh [CACHE_DIR [VERSION SOURCES_LIST [POOL DSC_SHA256]]]
#
# With VERSION and SOURCES_LIST (scripts/debian-root.sh): that version of
# Debian's kamailio source package, from the deb-src entries in SOURCES_LIST
# through an apt configuration of its own (state next to SOURCES_LIST).
# With POOL and DSC_SHA256 as well: a version the archive's index no longer
# lists (headers/pinned-sources), its .dsc fetched from the pool
# directory POOL and checked against DSC_SHA256, its archives against the .dsc.
# KAMAILIO_SRC=/path/to/kamailio overrides everything: it is checked and printed.
# Only headers are used from the tree; nothing of it is ever committed.
set -eu

die() { echo "fetch.sh: $*" >&2; exit 1; }

check_tree() {
    [ -f "$1/src/core/sr_module.h" ] && [ -f "$1/src/modules/tm/tm_load.h" ]
}

if [ -n "${KAMAILIO_SRC:-}" ] && [ $# -lt 2 ]; then
    check_tree "$KAMAILIO_SRC" || die "KAMAILIO_SRC=$KAMAILIO_SRC has no src/core/sr_module.h"
    echo "$KAMAILIO_SRC"
    exit 0
fi

here=$(cd "$(dirname "$0")" && pwd)
cache=${1:-$here/../.cache}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)

version=${2:-}
sources=${3:-}
pool=${4:-}
dsc_sha256=${5:-}
set -- # from here on: apt-get's options
if [ -z "$version" ]; then
    version=$(dpkg-query -W -f='${Version}' kamailio 2>/dev/null) ||
        die "the kamailio package is not installed (run: make deps)"
fi
upstream=${version#*:}
upstream=${upstream%-*}
tree="$cache/kamailio-$version/kamailio-$upstream"

if check_tree "$tree"; then
    echo "$tree"
    exit 0
fi

if [ -n "$pool" ]; then
    : # no index: the pinned checksum vouches for the .dsc
elif [ -n "$sources" ]; then
    # apt's state for these sources lives next to them
    apt=$(cd "$(dirname "$sources")" && pwd)
    mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/parts" "$apt/prefs"
    set -- -o Dir::Etc::SourceList="$apt/$(basename "$sources")" -o Dir::Etc::SourceParts="$apt/parts" \
        -o Dir::Etc::PreferencesParts="$apt/prefs" -o Dir::Etc::Preferences="$apt/prefs/none" \
        -o Dir::State::Lists="$apt/lists" -o Dir::Cache="$apt/cache" -o APT::Get::List-Cleanup=0
    apt-get "$@" update -q >&2 || die "apt-get update with $sources failed"
# apt-get source needs deb-src entries. Derive them from the deb entries the
# machine already uses, so the source comes from the same archive as the binary.
elif ! grep -rqsE '^(deb-src|Types:.*deb-src)' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    [ "$(id -u)" = 0 ] || die "no deb-src entry in apt sources; add one (or run as root), or set KAMAILIO_SRC"
    echo "fetch.sh: adding deb-src entries derived from the deb ones" >&2
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        case "$f" in *dmq-rs-src*) continue;; esac
        sed -e 's/^Types:.*/Types: deb-src/' "$f" >> /etc/apt/sources.list.d/dmq-rs-src.sources
        echo >> /etc/apt/sources.list.d/dmq-rs-src.sources
    done
    if [ -f /etc/apt/sources.list ]; then
        sed -n 's/^deb \(.*\)/deb-src \1/p' /etc/apt/sources.list > /etc/apt/sources.list.d/dmq-rs-src.list
    fi
    apt-get update -q >&2 || die "apt-get update failed"
fi

# $1: a directory holding the .dsc and the archives it names (detached
# signatures may be missing); $2: the directory to unpack into, inside $1.
unpack_by_hand() (
    cd "$1" || exit 1
    dsc=$(ls ./*.dsc 2>/dev/null | head -1)
    [ -n "$dsc" ] || exit 1
    files() { awk '/^Checksums-Sha256:/ { on = 1; next } /^[^ ]/ { on = 0 } on { print $1, $3 }' "$dsc"; }
    orig="" debian=""
    for name in $(files | cut -d' ' -f2); do
        case "$name" in *.asc) continue;; esac
        want=$(files | awk -v n="$name" '$2 == n { print $1 }')
        have=$(sha256sum "$name" 2>/dev/null | cut -d' ' -f1)
        [ -n "$want" ] && [ "$want" = "$have" ] || { echo "fetch.sh: $name missing or its checksum differs" >&2; exit 1; }
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

command -v dpkg-source >/dev/null || die "dpkg-source is missing (apt-get install dpkg-dev)"

# Fetches pool file $1 into the current directory, checked against sha256 $2.
pool_get() {
    /usr/lib/apt/apt-helper download-file "$pool/$1" "$1" "SHA256:$2" >&2
}

work="$cache/kamailio-$version"
rm -rf "$work.tmp"
mkdir -p "$work.tmp"
if [ -n "$pool" ]; then
    echo "fetch.sh: fetching the pinned Debian source of kamailio $version from $pool into $work" >&2
    (
        cd "$work.tmp" || exit 1
        dsc="kamailio_${version#*:}.dsc"
        pool_get "$dsc" "$dsc_sha256" || exit 1
        awk '/^Checksums-Sha256:/ { on = 1; next } /^[^ ]/ { on = 0 } on { print $1, $3 }' "$dsc" |
            while read -r sum name; do
                case "$name" in *.asc) continue ;; esac
                pool_get "$name" "$sum" || exit 1
            done
    ) && unpack_by_hand "$work.tmp" "kamailio-$upstream" || { rm -rf "$work.tmp"; die "cannot fetch the pinned source kamailio=$version from $pool"; }
else
echo "fetch.sh: fetching Debian source of kamailio $version into $work" >&2
(cd "$work.tmp" && apt-get "$@" source -q "kamailio=$version" >&2) || {
    # A mirror without the upstream signature (.orig.tar.gz.asc) makes
    # apt-get source fail after fetching everything else: check those files
    # against the .dsc and unpack them by hand.
    echo "fetch.sh: apt-get source failed; unpacking the fetched files by hand" >&2
    unpack_by_hand "$work.tmp" "kamailio-$upstream" || { rm -rf "$work.tmp"; die "apt-get source kamailio=$version failed"; }
}
fi
rm -rf "$work"
mv "$work.tmp" "$work"
check_tree "$tree" || die "unpacked source has no $tree/src/core/sr_module.h"
echo "$tree"
