"""A waterfall of each turn's stages, in seconds after the caller stopped speaking, as a PNG.

Worker stages are placed where they happen in a turn: end-of-utterance and transcription start
when the caller stops; both LLMs start on the final transcript (preemptive generation, the
pre-response beside the answer); the answer's TTS starts on the main LLM's first token. What the
caller heard (filler, answer) is measured on its own clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .turns import Turn


@dataclass(frozen=True)
class Bar:
    label: str
    start: float
    end: float
    heard: bool  # measured by the caller (vs. by the worker)


def waterfall(turn: Turn) -> list[Bar]:
    """The bars of one turn, top to bottom; stages the worker did not measure are left out."""
    s = turn.stages
    transcript = s.stt or 0.0
    bars: list[Bar] = []
    if s.eou is not None:
        bars.append(Bar("end of utterance", 0.0, s.eou, False))
    if s.stt is not None:
        bars.append(Bar("speech-to-text", 0.0, s.stt, False))
    if s.llm_fast is not None:
        bars.append(Bar("fast LLM first token", transcript, transcript + s.llm_fast, False))
    if s.llm_main is not None:
        bars.append(Bar("main LLM first token", transcript, transcript + s.llm_main, False))
        if s.tts is not None:
            first_token = transcript + s.llm_main
            bars.append(Bar("TTS first audio", first_token, first_token + s.tts, False))
    if turn.filler_at is not None:
        bars.append(Bar("filler heard", 0.0, turn.filler_at, True))
    if turn.answer_at is not None:
        bars.append(Bar("answer heard", 0.0, turn.answer_at, True))
    return bars


def render(turns: Sequence[Turn], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(number, turn, waterfall(turn)) for number, turn in enumerate(turns, 1)]
    height = sum(len(bars) + 1 for _, _, bars in rows)
    figure, axes = plt.subplots(figsize=(10, 1.2 + 0.32 * height))
    y, ticks, labels = 0, [], []
    for number, turn, bars in rows:
        for bar in bars:
            colour = ("tab:green" if bar.label.startswith("filler") else "tab:blue") if bar.heard else "tab:gray"
            axes.barh(y, bar.end - bar.start, left=bar.start, color=colour, height=0.7)
            axes.text(bar.end, y, f" {bar.end * 1000:.0f} ms", va="center", fontsize=7)
            ticks.append(y)
            labels.append(f"{number}: {bar.label}")
            y += 1
        y += 1
    axes.set_yticks(ticks, labels, fontsize=8)
    axes.invert_yaxis()
    axes.set_xlabel("seconds after the caller stopped speaking")
    axes.set_title("Each turn: worker stages (grey) and what the caller heard (filler green, answer blue)")
    axes.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
