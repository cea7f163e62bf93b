"""The figure of `make bench-autoscale`: calls, ready capacity and waiting callers over the spike day."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RULES = ("reactive (previous default)", "headroom (default)", "fixed at peak")


def plot(timelines: dict, out: Path, capacity: int, day: str = "spike") -> None:
    starts = sorted({start for name, start, _ in timelines if name == day})
    figure, axes = plt.subplots(len(RULES), len(starts), figsize=(7 * len(starts), 3.2 * len(RULES)), sharex=True, squeeze=False)
    for column, start in enumerate(starts):
        for row, rule in enumerate(RULES):
            rows = timelines[(day, start, rule)]
            hours = [t / 3600 for t, *_ in rows]
            ax = axes[row][column]
            ax.plot(hours, [serving for _, serving, *_ in rows], label="calls in progress", lw=0.8)
            ax.plot(hours, [ready for _, _, ready, *_ in rows], label=f"ready capacity ({capacity} per pod)", lw=0.8)
            ax.fill_between(hours, [waiting for _, _, _, waiting, _ in rows], color="tab:red", alpha=0.6, label="callers waiting")
            ax.set_title(f"{rule}, pod start {start} s", fontsize=9)
            ax.set_ylabel("sessions")
            if row == len(RULES) - 1:
                ax.set_xlabel(f"hour of the {day} day")
    axes[0][0].legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    figure.savefig(out, dpi=80)
    plt.close(figure)
