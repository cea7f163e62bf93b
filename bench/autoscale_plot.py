"""The figure of `make bench-autoscale`: calls, ready capacity and waiting callers over the spike day."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402



def plot(timelines: dict, out: Path, capacity: int, day: str = "spike") -> None:
    """One row per rule (in the order simulated), one column per pod start time."""
    starts = sorted({start for name, start, _ in timelines if name == day})
    rules = list(dict.fromkeys(rule for name, _, rule in timelines if name == day))
    figure, axes = plt.subplots(len(rules), len(starts), figsize=(7 * len(starts), 3.2 * len(rules)), sharex=True, squeeze=False)
    for column, start in enumerate(starts):
        for row, rule in enumerate(rules):
            rows = timelines[(day, start, rule)]
            hours = [t / 3600 for t, *_ in rows]
            ax = axes[row][column]
            ax.plot(hours, [serving for _, serving, *_ in rows], label="calls in progress", lw=0.8)
            ax.plot(hours, [ready for _, _, ready, *_ in rows], label=f"ready capacity ({capacity} per pod)", lw=0.8)
            ax.fill_between(hours, [waiting for _, _, _, waiting, _ in rows], color="tab:red", alpha=0.6, label="callers waiting")
            ax.set_title(f"{rule}, pod start {start} s", fontsize=9)
            ax.set_ylabel("sessions")
            if row == len(rules) - 1:
                ax.set_xlabel(f"hour of the {day} day")
    axes[0][0].legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    figure.savefig(out, dpi=80)
    plt.close(figure)
