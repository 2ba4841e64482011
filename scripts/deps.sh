#!/bin/sh
# Installs what building, running and testing dmq_rs need on Debian 12, and
# fetches the Kamailio headers; makes the Debian roots with Kamailio 6.0 and 6.1.
# Idempotent: installs only what is missing.
set -eu

packages="kamailio kamailio-extra-modules kamailio-lua-modules kamailio-presence-modules kamailio-tls-modules openssl sip-tester libclang-dev dpkg-dev binutils util-linux debootstrap patch lintian iproute2 dnsmasq-base"
missing=""
for p in $packages; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    [ "$(id -u)" = 0 ] || { echo "deps.sh: missing packages:$missing (run as root, or install them)" >&2; exit 1; }
    echo "deps.sh: installing$missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $missing >&2
fi
command -v cargo >/dev/null || { echo "deps.sh: cargo (Rust) is required" >&2; exit 1; }
# make lint: rustfmt and clippy (rustup's default profile has them).
for component in rustfmt clippy; do
    cargo "${component#rust}" --version >/dev/null 2>&1 && continue
    command -v rustup >/dev/null || { echo "deps.sh: cargo $component is required (rustup component add $component)" >&2; exit 1; }
    rustup component add "$component"
done
# The headers: Debian's source package of the installed kamailio (cached).
"$(dirname "$0")/../kamailio-headers/fetch.sh" >/dev/null
# Kamailio 6.0 and 6.1: a Debian 13 root and a Debian testing root
# (debootstrap), each with its kamailio's source package, all cached; quick
# when they are there. One after the other, never two debootstraps at once.
for release in 6.0 6.1; do
    if ! "$(dirname "$0")/debian-root.sh" $release >/dev/null; then
        # As root this is an error; otherwise only that release's build and tests need it.
        [ "$(id -u)" != 0 ] || exit 1
        echo "deps.sh: no Kamailio $release root: \`make KAMAILIO=$release\` and \`make test\` need it (run make deps as root)" >&2
    fi
done
