#!/usr/bin/python3
"""The dmq_rs dashboard's panels, drawn from series scraped in a test run.

    /usr/bin/python3 contrib/grafana/render.py [CSV] [PNG]

CSV: what tests/statistics.rs writes (target/itest/metrics-host.csv: one row
per /metrics scrape of xhttp_prom, a column per kamailio_dmq_* metric); PNG:
the picture (default contrib/grafana/dashboard.png). It draws the panels of
dmq_rs-dashboard.json (nodes up, node states, replication rate,
retransmissions and timeouts, queue depth, refused messages) with Debian's
python3-matplotlib, for the README when no Grafana is at hand. Rates are the
counters' differences between scrapes, per second, as rate() would give.
"""
import csv
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

here = os.path.dirname(os.path.abspath(__file__))
top = os.path.dirname(os.path.dirname(here))
source = sys.argv[1] if len(sys.argv) > 1 else os.path.join(top, "target/itest/metrics-host.csv")
target = sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, "dashboard.png")

with open(source) as f:
    rows = list(csv.DictReader(f))
t = [float(r["seconds"]) for r in rows]


def series(name):
    return [float(r.get("kamailio_dmq_" + name) or 0) for r in rows]


def rate(name):
    v = series(name)
    out = [0.0]
    for i in range(1, len(v)):
        dt = t[i] - t[i - 1]
        out.append((v[i] - v[i - 1]) / dt if dt > 0 else 0.0)
    return out


plt.style.use("dark_background")
fig = plt.figure(figsize=(14, 10), facecolor="#111217")
fig.suptitle("Kamailio DMQ (dmq_rs) — scraped from xhttp_prom during tests/statistics.rs", color="#d8d9da", fontsize=13)
grid = fig.add_gridspec(3, 4, hspace=0.45, wspace=0.35)


def panel(spec, title, lines, unit=""):
    ax = fig.add_subplot(spec, facecolor="#181b1f")
    for label, values in lines:
        ax.plot(t, values, linewidth=2, label=label)
    top_value = max([max(values) for _, values in lines] + [0])
    ax.set_ylim(0, max(1.0, top_value * 1.15))
    ax.set_title(title, color="#d8d9da", fontsize=11, loc="left")
    ax.set_xlabel("seconds", fontsize=8)
    if unit:
        ax.set_ylabel(unit, fontsize=8)
    ax.grid(color="#2c3235")
    ax.tick_params(labelsize=8)
    ax.legend(fontsize=8, loc="upper left", frameon=False)
    return ax


# Nodes up: a Grafana "stat" panel (last value), coloured as its thresholds.
ax = fig.add_subplot(grid[0, 0], facecolor="#181b1f")
up = int(series("nodes_active")[-1])
ax.set_facecolor("#1a7f37" if up >= 2 else "#a4161a")
ax.text(0.5, 0.55, str(up), ha="center", va="center", fontsize=60, color="white", transform=ax.transAxes)
ax.text(0.5, 0.12, "nodes up (node 0, last)", ha="center", fontsize=10, color="white", transform=ax.transAxes)
ax.set_xticks([])
ax.set_yticks([])
ax.set_title("Nodes up", color="#d8d9da", fontsize=11, loc="left")

panel(grid[0, 1:], "Node states", [(s, series("nodes_" + s)) for s in ("active", "pending", "timeout", "not_active", "disabled")])
panel(grid[1, :2], "Replication rate", [("sent", rate("messages_sent")), ("answered 2xx", rate("messages_replied_2xx"))], "messages/s")
panel(grid[1, 2:], "Retransmissions and timeouts",
      [("retransmitted", rate("messages_retransmitted")), ("timed out", rate("messages_timed_out")),
       ("resent after 503", rate("messages_retried_after_503")), ("through tm", rate("messages_sent_through_tm"))], "messages/s")
panel(grid[2, :2], "Queue depth",
      [("jobs queued", series("jobs_queued")), ("jobs peak", series("jobs_peak")), ("in flight", series("messages_in_flight"))])
panel(grid[2, 2:], "Refused messages",
      [("rejected 503", rate("jobs_rejected")),
       ("answered 4xx/5xx", [a + b for a, b in zip(rate("messages_replied_4xx"), rate("messages_replied_5xx"))]),
       ("forged replies", rate("forged_replies")), ("nodes refused", rate("nodes_refused"))]
      + [("refused: " + name[len("kamailio_dmq_refused_"):], rate(name[len("kamailio_dmq_"):]))
         for name in rows[0] if name.startswith("kamailio_dmq_refused_")], "per second")

fig.savefig(target, dpi=80, facecolor=fig.get_facecolor())
print(target)
