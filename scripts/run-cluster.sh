#!/bin/bash
# `make run`: three Kamailio registrars with dmq_rs and dmq_usrloc on
# 127.0.0.2-4, port 5090 (cfg-examples/registrar-cluster.cfg), each in its
# own process group with its own runtime dir and ctl socket under ./run.
# Shows `kamcmd dmq.list_nodes` of each node, registers a few contacts on
# the first node (sipp) and shows them on the others, then keeps the
# cluster up until Ctrl-C (or RUN_SECONDS, when set) and stops exactly what
# it started. `make stop` (scripts/run-cluster.sh stop) stops it from
# another shell.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
module_dir="$top/build"
stock_dir=${KAMAILIO_MODDIR:-$(dirname "$(dpkg -L kamailio | grep '/modules/tm.so$' | head -1)")}
cfg="$top/cfg-examples/registrar-cluster.cfg"
rundir="$top/run"
seed="sip:127.0.0.2:5090"
contacts=${RUN_CONTACTS:-3}
pids=()

# `stop`: SIGTERM to the script of a running `make run` (its pid is in
# run/script.pid), which stops its nodes as Ctrl-C does (SIGINT would be
# ignored by a script started in the background).
if [ "${1:-}" = stop ]; then
    [ -f "$rundir/script.pid" ] || { echo "no cluster of make run is running (no $rundir/script.pid)"; exit 0; }
    pid=$(cat "$rundir/script.pid")
    if kill -0 "$pid" 2>/dev/null && grep -q run-cluster.sh "/proc/$pid/cmdline" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then echo "make run (pid $pid) did not stop within 15 s"; exit 1; fi
        echo "stopped the cluster of make run (pid $pid)"
    else
        echo "the cluster of make run is not running (pid $pid is gone)"
    fi
    rm -f "$rundir/script.pid"
    exit 0
fi

stop_all() {
    trap - INT TERM EXIT
    echo
    echo "stopping the cluster"
    for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null; done
    for _ in $(seq 50); do
        alive=0
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ $alive = 0 ] && break
        sleep 0.1
    done
    for pid in "${pids[@]}"; do kill -KILL -- "-$pid" 2>/dev/null; done
    rm -f "$rundir/script.pid"
    exit 0
}
trap stop_all INT TERM EXIT
mkdir -p "$rundir"
echo $$ > "$rundir/script.pid"

for n in 2 3 4; do
    ip=127.0.0.$n
    dir="$rundir/node$n"
    rm -rf "$dir"; mkdir -p "$dir"
    setsid kamailio -f "$cfg" -L "$module_dir:$stock_dir" -DD -E -Y "$dir" -P "$dir/kamailio.pid" -w "$dir" \
        -A "NODE_LISTEN=udp:$ip:5090" -A "DMQ_SERVER=\"sip:$ip:5090\"" -A "DMQ_SEED=\"$seed\"" \
        -A "CTL_SOCKET=\"unix:$dir/ctl.sock\"" >"$dir/kamailio.log" 2>&1 &
    pids+=($!)
    echo "node $ip: pid $!, log $dir/kamailio.log"
done

rpc() { kamcmd -s "unix:$rundir/node$1/ctl.sock" "${@:2}"; }

# Wait (bounded) until every node answers RPC.
for n in 2 3 4; do
    for _ in $(seq 100); do rpc $n core.uptime >/dev/null 2>&1 && break; sleep 0.1; done
    rpc $n core.uptime >/dev/null 2>&1 || { echo "node 127.0.0.$n did not start:"; tail -20 "$rundir/node$n/kamailio.log"; exit 1; }
done
sleep 3
for n in 2 3 4; do
    echo "=== kamcmd dmq.list_nodes on 127.0.0.$n (pid ${pids[$((n-2))]}, module: $(grep -m1 -o '/[^ ]*dmq_rs.so' /proc/${pids[$((n-2))]}/maps))"
    rpc $n dmq.list_nodes
done

# The point of it: contacts registered on one node are on the others.
contacts_on() { rpc "$1" stats.get_statistics usrloc: 2>/dev/null | sed -n 's/.*usrloc:location_contacts = *//p'; }
echo
echo "=== registering $contacts contacts on 127.0.0.2 (sipp, tests/sipp/register.xml; log in $rundir/sipp)"
mkdir -p "$rundir/sipp"
(cd "$rundir/sipp" && timeout 30 sipp -sf "$top/tests/sipp/register.xml" -m "$contacts" -r 10 -i 127.0.0.5 -p 5070 \
    -trace_err -nostdin 127.0.0.2:5090 >sipp.log 2>&1) || echo "sipp failed: see $rundir/sipp/"
for n in 3 4; do
    for _ in $(seq 50); do [ "$(contacts_on $n)" = "$contacts" ] && break; sleep 0.1; done
done
for n in 2 3 4; do
    echo "=== 127.0.0.$n: usrloc:location_contacts = $(contacts_on $n); kamcmd ul.dump (AoRs, contacts):"
    rpc $n ul.dump | grep -E 'AoR:|Address:' | sed 's/^[[:space:]]*/    /'
done
echo "=== dmq statistics of 127.0.0.2 (kamcmd stats.get_statistics dmq:)"
rpc 2 stats.get_statistics dmq: | grep -E 'nodes_active|messages_sent |messages_replied_2xx|jobs_processed'

echo
echo "ctl sockets: $rundir/node{2,3,4}/ctl.sock (e.g. kamcmd -s unix:$rundir/node3/ctl.sock ul.dump)"
if [ -n "${RUN_SECONDS:-}" ]; then
    echo "cluster running for $RUN_SECONDS s; Ctrl-C or \`make stop\` stops it sooner"
    sleep "$RUN_SECONDS"
else
    echo "cluster running; stop it with Ctrl-C here, or \`make stop\` from another shell"
    while :; do sleep 1; done
fi
