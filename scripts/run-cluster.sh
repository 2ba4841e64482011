#!/bin/bash
# `make run`: three Kamailio nodes with dmq_rs on 127.0.0.2-4, port 5090,
# each in its own process group with its own runtime dir and ctl socket under
# ./run. Shows `kamcmd dmq.list_nodes` of each node, then keeps the cluster up
# until Ctrl-C (or RUN_SECONDS, when set) and stops exactly what it started.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
module_dir="$top/build"
stock_dir=${KAMAILIO_MODDIR:-$(dirname "$(dpkg -L kamailio | grep '/modules/tm.so$' | head -1)")}
cfg="$top/cfg-examples/cluster-node.cfg"
rundir="$top/run"
seed="sip:127.0.0.2:5090"
pids=()

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
    exit 0
}
trap stop_all INT TERM EXIT

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
if [ -n "${RUN_SECONDS:-}" ]; then
    sleep "$RUN_SECONDS"
else
    echo "cluster running; Ctrl-C stops it"
    while :; do sleep 1; done
fi
