#!/bin/sh
# The package test's work (tests/package.rs), inside a private mount
# namespace (`unshare --mount --propagation private`): ROOT (/ for the
# machine's Kamailio 5.6, the Debian 13 root for 6.0) is the read-only lower
# layer of an overlay whose upper layer is a tmpfs on SCRATCH, so the
# install, the node and the removal change nothing of ROOT; the mounts and
# every change go away with the namespace.
#
#   install-remove.sh ROOT DEB IP:PORT SCRATCH [upgrade]
#
# With `upgrade`: first upgrades the overlay's kamailio packages from the
# root's own apt sources (its release's security archive included), as an
# operator who applied security updates has them.
# Installs DEB with dpkg -i, starts a node whose config says only
# loadmodule "dmq_rs.so" (no -L: Kamailio's own module directory), asks it
# for its nodes and statistics, stops it, purges the package and checks that
# nothing of it is left. Prints what it sees; exits non-zero on a failure.
set -eu
lower=$1 deb=$2 addr=$3 scratch=$4 upgrade=${5:-}
fail() { echo "FAIL: $*"; exit 1; }

mount -t tmpfs tmpfs "$scratch"
mkdir "$scratch/upper" "$scratch/work" "$scratch/root"
mount -t overlay overlay -o "lowerdir=$lower,upperdir=$scratch/upper,workdir=$scratch/work" "$scratch/root"
r=$scratch/root
# An overlay shows ROOT's own file system only: a separate /usr mount would be missing.
[ -x "$r/usr/sbin/kamailio" ] || fail "no /usr/sbin/kamailio in the overlay of $lower (is /usr a separate mount?)"
mount --bind /dev "$r/dev"
mount -t proc proc "$r/proc"
mount -t tmpfs tmpfs "$r/tmp"
mount -t tmpfs tmpfs "$r/run"
in_root() { chroot "$r" "$@"; }
kpid=""
trap '[ -z "$kpid" ] || kill -KILL "$kpid" 2>/dev/null || true' EXIT

package=$(dpkg-deb -f "$deb" Package)
if in_root dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed"; then
    fail "$package is already installed in $lower"
fi
if [ "$upgrade" = upgrade ]; then
    [ -f "$r/etc/resolv.conf" ] || cp /etc/resolv.conf "$r/etc/resolv.conf"
    before=$(in_root dpkg-query -W -f='${Version}' kamailio)
    kpkgs=$(in_root dpkg-query -W -f='${Package} ${Status}\n' 'kamailio*' | awk '/ok installed/ { print $1 }' | tr '\n' ' ')
    echo "== apt-get upgrade of $kpkgs(kamailio $before)"
    in_root apt-get update -q >"$scratch/apt.log" 2>&1 || { cat "$scratch/apt.log"; fail "apt-get update in the overlay"; }
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive in_root apt-get install -y -q --only-upgrade --no-install-recommends $kpkgs >>"$scratch/apt.log" 2>&1 ||
        { cat "$scratch/apt.log"; fail "apt-get upgrade of kamailio in the overlay"; }
    echo "kamailio upgraded: $before -> $(in_root dpkg-query -W -f='${Version}' kamailio)"
fi
# What the upper layer holds before the package (an upgrade's own files).
(cd "$scratch/upper" && find . -name '*dmq*' | sort) > "$scratch/before"
cp "$deb" "$r/tmp/package.deb"
echo "== dpkg -i $(basename "$deb")"
in_root dpkg -i /tmp/package.deb || fail "dpkg -i"
in_root dpkg-query -W -f='${Status} ${Version}\n' "$package"
in_root dpkg -L "$package" > "$scratch/files"
grep -q '/kamailio/modules/dmq_rs.so$' "$scratch/files" || fail "no dmq_rs.so in Kamailio's module directory"

cat > "$r/tmp/node.cfg" <<CFG
#!KAMAILIO
debug=2
log_stderror=yes
children=1
auto_aliases=no
dns=no
rev_dns=no
listen=udp:$addr
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "ctl.so"
loadmodule "kex.so"
loadmodule "textops.so"
loadmodule "dmq_rs.so"
modparam("ctl", "binrpc", "unix:/tmp/ctl.sock")
modparam("dmq", "server_address", "sip:$addr")
request_route {
	if (is_method("KDMQ")) { dmq_handle_message(); exit; }
	drop;
}
CFG
echo "== kamailio -f node.cfg (loadmodule \"dmq_rs.so\", no -L)"
# (chroot execs kamailio: $! is the node's main process; it stays in this
# script's process group, which the test kills whatever happens.)
chroot "$r" kamailio -f /tmp/node.cfg -DD -E -Y /tmp -P /tmp/kamailio.pid -w /tmp -m 32 -M 8 > "$scratch/kamailio.log" 2>&1 &
kpid=$!
rpc() { in_root kamcmd -s unix:/tmp/ctl.sock "$@"; }
up=no
for _ in $(seq 200); do
    kill -0 "$kpid" 2>/dev/null || break
    if rpc dmq.list_nodes >/dev/null 2>&1; then up=yes; break; fi
    sleep 0.1
done
[ $up = yes ] || { cat "$scratch/kamailio.log"; fail "the node did not start"; }
echo "module loaded from: $(grep -m1 -o '/[^ ]*dmq_rs\.so' "/proc/$kpid/maps" || true)"
rpc dmq.list_nodes
rpc stats.get_statistics dmq: | grep 'dmq:nodes_active ' 
kill -TERM "$kpid"
for _ in $(seq 100); do kill -0 "$kpid" 2>/dev/null || break; sleep 0.1; done
kill -KILL "$kpid" 2>/dev/null || true
wait "$kpid" 2>/dev/null || true
kpid=""

echo "== dpkg --purge $package"
in_root dpkg --purge "$package" || fail "dpkg --purge"
left=""
while read -r f; do
    # What the package shared with the root before (/usr, /usr/share/doc) stays.
    if [ -e "$lower$f" ]; then continue; fi
    if [ -e "$r$f" ] || [ -L "$r$f" ]; then left="$left $f"; fi
done < "$scratch/files"
[ -z "$left" ] || fail "left behind:$left"
stray=$(cd "$scratch/upper" && find . -name '*dmq*' | sort | comm -23 - "$scratch/before" | head)
[ -z "$stray" ] || fail "left behind: $stray"
! grep -q "^Package: $package\$" "$r/var/lib/dpkg/status" || fail "still in dpkg's status"
echo "== nothing of $package is left"
