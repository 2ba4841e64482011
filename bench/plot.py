#!/usr/bin/env python3
"""Charts what `make bench` measured: the entry node's shm over time and the
copies lost per workload, stock dmq.so against dmq_rs (and the baseline node
without dmq, in gray). Reads shm.csv and loss.csv from the results directory;
when present, also scale.csv (replication overhead per copy and copies held
against the number of nodes) and ceiling.csv (highest passing rate of each
ladder). Writes bench.png next to them."""

import csv
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"stock dmq.so": "#c0392b", "dmq_rs": "#2471a3", "baseline (no dmq)": "#7f8c8d"}
IMPLS = ["stock dmq.so", "dmq_rs"]


def read_csv(path: Path) -> list:
    if not path.exists():
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def num(value: str):
    return float(value) if value not in ("", None) else None


def scale_panels(rows: list, ax_cpu, ax_held) -> None:
    """Overhead per copy and copies held (median over rounds) against nodes."""
    by = defaultdict(list)  # (implementation, nodes) -> rows
    for row in rows:
        by[(row["implementation"], int(row["nodes"]))].append(row)
    sizes = sorted({n for (_, n) in by})
    for impl in IMPLS:
        xs, cpu, held = [], [], []
        for n in sizes:
            runs = by.get((impl, n), [])
            if not runs:
                continue
            overheads = [num(r["overhead_us_per_copy"]) for r in runs]
            overheads = [o for o in overheads if o is not None]
            xs.append(n)
            cpu.append(statistics.median(overheads) if overheads else float("nan"))
            held.append(statistics.median(
                100.0 * float(r["held_copies"]) / float(r["expected_copies"]) for r in runs))
        ax_cpu.plot(xs, cpu, "o-", color=COLORS[impl], label=impl)
        ax_held.plot(xs, held, "o-", color=COLORS[impl], label=impl)
    for ax in (ax_cpu, ax_held):
        ax.set_xscale("log")
        ax.set_xticks(sizes, [str(n) for n in sizes])
        ax.minorticks_off()
        ax.set_xlabel("nodes (REGISTERs into node 0)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax_cpu.set_ylabel("µs CPU per replicated copy")
    ax_cpu.set_title("scale: replication overhead per copy")
    ax_cpu.set_ylim(bottom=0)
    ax_held.set_ylabel("copies held (% of nodes x sent)")
    ax_held.set_title("scale: copies held once settled")
    ax_held.set_ylim(0, 105)


def ceiling_panel(rows: list, ax) -> None:
    """The highest passing step of each ladder (the ladder stops at its first failure)."""
    steps = defaultdict(list)  # implementation -> [(rate, passed)] in ladder order
    for row in rows:
        steps[row["implementation"]].append((int(row["rate"]), row["passed"] == "1"))
    impls = [i for i in IMPLS + ["baseline (no dmq)"] if i in steps]
    labels, values = [], []
    for impl in impls:
        passed = [rate for rate, ok in steps[impl] if ok]
        topped = all(ok for _, ok in steps[impl])
        labels.append(("≥ " if topped else "") + str(max(passed) if passed else 0))
        values.append(max(passed) if passed else 0)
    bars = ax.bar(range(len(impls)), values, color=[COLORS[i] for i in impls])
    ax.bar_label(bars, labels=labels, fontsize=8)
    ax.set_xticks(range(len(impls)), [i.replace(" (", "\n(") for i in impls], fontsize=8)
    ax.set_ylabel("REGISTER/s")
    ax.set_title("ceiling: highest rate with nothing lost, no 503")
    ax.grid(axis="y", alpha=0.3)


def main(results: Path) -> None:
    shm = defaultdict(list)  # (workload, implementation, round) -> [(t, mb)]
    for row in read_csv(results / "shm.csv"):
        shm[(row["workload"], row["implementation"], row["round"])].append(
            (float(row["seconds"]), float(row["shm_mb"])))
    lost = defaultdict(list)  # (workload, implementation) -> [lost share]
    for row in read_csv(results / "loss.csv"):
        lost[(row["workload"], row["implementation"])].append(
            100.0 * float(row["lost"]) / float(row["sent_copies"]))
    scale = read_csv(results / "scale.csv")
    ceiling = read_csv(results / "ceiling.csv")

    workloads = list(dict.fromkeys(w for (w, _, _) in shm))
    top = len(workloads) + 1
    bottom = (2 if scale else 0) + (1 if ceiling else 0)
    cols = max(top, bottom)
    rows = 2 if bottom else 1
    fig = plt.figure(figsize=(5 * cols, 4.2 * rows))
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(top)]
    for ax, workload in zip(axes, workloads):
        for (w, impl, rnd), series in sorted(shm.items()):
            if w != workload:
                continue
            xs, ys = zip(*series)
            ax.plot(xs, ys, color=COLORS.get(impl, "gray"), alpha=1.0 if rnd == "1" else 0.4,
                    label=f"{impl} (round {rnd})")
        ax.set_title(f"{workload}: entry node shm in use")
        ax.set_xlabel("seconds since the first REGISTER")
        ax.set_ylabel("MB")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)

    ax = axes[-1]
    loss_workloads = list(dict.fromkeys(w for (w, _) in lost))
    width = 0.38
    for i, impl in enumerate(IMPLS):
        values = [statistics.median(lost.get((w, impl), [0.0])) for w in loss_workloads]
        xs = [j + (i - 0.5) * width for j in range(len(loss_workloads))]
        bars = ax.bar(xs, values, width, label=impl, color=COLORS[impl])
        ax.bar_label(bars, fmt="%.1f%%", fontsize=7)
    ax.set_xticks(range(len(loss_workloads)), loss_workloads)
    ax.set_ylabel("copies lost (% of sent x 3 nodes)")
    ax.set_title("copies lost (median)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)

    panel = cols + 1
    if scale:
        ax_cpu = fig.add_subplot(rows, cols, panel)
        ax_held = fig.add_subplot(rows, cols, panel + 1)
        scale_panels(scale, ax_cpu, ax_held)
        panel += 2
    if ceiling:
        ceiling_panel(ceiling, fig.add_subplot(rows, cols, panel))

    fig.tight_layout()
    out = results / "bench.png"
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results"))
