#!/bin/sh
# Print the path of a Kamailio source tree that matches the installed kamailio
# package, fetching Debian's source package into the cache when it is missing.
#
#   kamailio-headers/fetch.sh [CACHE_DIR]
#
# KAMAILIO_SRC=/path/to/kamailio overrides everything: it is checked and printed.
# Only headers are used from the tree; nothing of it is ever committed.
set -eu

die() { echo "fetch.sh: $*" >&2; exit 1; }

check_tree() {
    [ -f "$1/src/core/sr_module.h" ] && [ -f "$1/src/modules/tm/tm_load.h" ]
}

if [ -n "${KAMAILIO_SRC:-}" ]; then
    check_tree "$KAMAILIO_SRC" || die "KAMAILIO_SRC=$KAMAILIO_SRC has no src/core/sr_module.h"
    echo "$KAMAILIO_SRC"
    exit 0
fi

here=$(cd "$(dirname "$0")" && pwd)
cache=${1:-$here/../.cache}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)

version=$(dpkg-query -W -f='${Version}' kamailio 2>/dev/null) ||
    die "the kamailio package is not installed (run: make deps)"
upstream=${version#*:}
upstream=${upstream%-*}
tree="$cache/kamailio-$version/kamailio-$upstream"

if check_tree "$tree"; then
    echo "$tree"
    exit 0
fi

# apt-get source needs deb-src entries. Derive them from the deb entries the
# machine already uses, so the source comes from the same archive as the binary.
if ! grep -rqsE '^(deb-src|Types:.*deb-src)' /etc/apt/sources.list /etc/apt/sources.list.d/; then
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

command -v dpkg-source >/dev/null || die "dpkg-source is missing (apt-get install dpkg-dev)"

work="$cache/kamailio-$version"
rm -rf "$work.tmp"
mkdir -p "$work.tmp"
echo "fetch.sh: fetching Debian source of kamailio $version into $work" >&2
(cd "$work.tmp" && apt-get source -q "kamailio=$version" >&2) ||
    die "apt-get source kamailio=$version failed"
rm -rf "$work"
mv "$work.tmp" "$work"
check_tree "$tree" || die "unpacked source has no $tree/src/core/sr_module.h"
echo "$tree"
