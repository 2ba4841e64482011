#!/usr/bin/env python3
"""Charts what `make bench` measured: the entry node's shm over time and the
copies lost per workload, stock dmq.so against dmq_rs. Reads shm.csv and
loss.csv from the results directory, writes bench.png next to them."""

import csv
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"stock dmq.so": "#c0392b", "dmq_rs": "#2471a3"}


def main(results: Path) -> None:
    shm = defaultdict(list)  # (workload, implementation, round) -> [(t, mb)]
    with open(results / "shm.csv") as f:
        for row in csv.DictReader(f):
            shm[(row["workload"], row["implementation"], row["round"])].append(
                (float(row["seconds"]), float(row["shm_mb"])))
    lost = defaultdict(list)  # (workload, implementation) -> [lost share]
    with open(results / "loss.csv") as f:
        for row in csv.DictReader(f):
            lost[(row["workload"], row["implementation"])].append(
                100.0 * float(row["lost"]) / float(row["sent_copies"]))

    workloads = list(dict.fromkeys(w for (w, _, _) in shm))
    fig, axes = plt.subplots(1, len(workloads) + 1, figsize=(5 * (len(workloads) + 1), 4.2))
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
    impls = ["stock dmq.so", "dmq_rs"]
    loss_workloads = list(dict.fromkeys(w for (w, _) in lost))
    width = 0.38
    for i, impl in enumerate(impls):
        values = [statistics.median(lost.get((w, impl), [0.0])) for w in loss_workloads]
        xs = [j + (i - 0.5) * width for j in range(len(loss_workloads))]
        bars = ax.bar(xs, values, width, label=impl, color=COLORS[impl])
        ax.bar_label(bars, fmt="%.1f%%", fontsize=7)
    ax.set_xticks(range(len(loss_workloads)), loss_workloads)
    ax.set_ylabel("copies lost (% of sent x 3 nodes)")
    ax.set_title("copies lost (median)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)

    fig.tight_layout()
    out = results / "bench.png"
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results"))
