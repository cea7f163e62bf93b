"""Per-turn figures: what the caller heard (its own clock) and what the worker measured (its
Prometheus metrics), and the table the demo prints. Pure functions, tested in tests/demo/.

The worker's metrics are cumulative (histogram sums and counts, token and cost counters). The
demo samples them, summed over the worker pods, while the caller talks; the turns are sequential,
so the difference between the sample taken when the caller stopped asking question N and the one
taken when it stopped asking question N+1 is turn N's share. A stage's figure is that share's mean (sum / count).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from agent_worker.metric_names import PREFIX

# Stage -> (histogram, label filter): the latencies the worker exports for each turn.
STAGES: dict[str, tuple[str, dict[str, str]]] = {
    "eou": (PREFIX + "end_of_utterance_delay_seconds", {}),
    "stt": (PREFIX + "transcription_delay_seconds", {}),
    "llm_main": (PREFIX + "llm_ttft_seconds", {"role": "main"}),
    "llm_fast": (PREFIX + "llm_ttft_seconds", {"role": "fast"}),
    "tts": (PREFIX + "tts_ttfb_seconds", {}),
}
TOKEN_COUNTERS = (PREFIX + "llm_prompt_tokens_total", PREFIX + "llm_completion_tokens_total")
COST_COUNTER = PREFIX + "cost_usd_total"

Snapshot = dict[str, float]  # "<stage>.sum", "<stage>.count", "tokens", "cost" -> cumulative value


def snapshot(exposition: str) -> Snapshot:
    """The cumulative figures the table needs, from one scrape of the worker's /metrics."""
    values: Snapshot = {"tokens": 0.0, "cost": 0.0}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            for stage, (histogram, labels) in STAGES.items():
                for suffix in ("sum", "count"):
                    if sample.name == f"{histogram}_{suffix}" and labels.items() <= sample.labels.items():
                        values[f"{stage}.{suffix}"] = values.get(f"{stage}.{suffix}", 0.0) + sample.value
            if sample.name in TOKEN_COUNTERS:
                values["tokens"] += sample.value
            elif sample.name == COST_COUNTER:
                values["cost"] += sample.value
    return values


def combined(snapshots: Iterable[Snapshot]) -> Snapshot:
    """The figures of several worker pods' scrapes taken together (each is cumulative, so they add)."""
    total: Snapshot = {"tokens": 0.0, "cost": 0.0}
    for values in snapshots:
        for key, value in values.items():
            total[key] = total.get(key, 0.0) + value
    return total


@dataclass(frozen=True)
class Stages:
    """One turn's worker-side figures; a stage is None when the worker measured none in the turn."""

    eou: float | None
    stt: float | None
    llm_main: float | None
    llm_fast: float | None
    tts: float | None
    tokens: int
    cost: float


def stages_between(before: Snapshot, after: Snapshot) -> Stages:
    means = {}
    for stage in STAGES:
        count = after.get(f"{stage}.count", 0.0) - before.get(f"{stage}.count", 0.0)
        total = after.get(f"{stage}.sum", 0.0) - before.get(f"{stage}.sum", 0.0)
        means[stage] = total / count if count > 0 else None
    return Stages(**means, tokens=round(after["tokens"] - before["tokens"]), cost=after["cost"] - before["cost"])


def at(samples: Sequence[tuple[float, Snapshot]], moment: float) -> Snapshot:
    """The last sample taken at or before `moment` (the first one if none was)."""
    chosen = samples[0][1]
    for taken, values in samples:
        if taken > moment:
            break
        chosen = values
    return chosen


def per_turn(samples: Sequence[tuple[float, Snapshot]], speech_ends: Sequence[float]) -> list[Stages]:
    """Turn N spans from question N's end to question N+1's end; the last one to the last sample."""
    bounds = [at(samples, end) for end in speech_ends] + [samples[-1][1]]
    return [stages_between(bounds[i], bounds[i + 1]) for i in range(len(speech_ends))]


@dataclass(frozen=True)
class Turn:
    """One question: what the caller heard, in seconds after it stopped speaking, and the stages."""

    question: str
    filler_at: float | None
    answer_at: float | None
    filler_text: str
    answer_text: str
    stages: Stages

    @property
    def filler_first(self) -> bool:
        return self.filler_at is not None and self.answer_at is not None and self.filler_at < self.answer_at


def heard(turn, stages: Stages) -> Turn:
    """A Turn from the caller's HeardTurn (time.monotonic() stamps) and the worker's stages."""
    def after_stop(moment: float | None) -> float | None:
        return None if moment is None else moment - turn.speech_end

    return Turn(turn.question, after_stop(turn.filler_start), after_stop(turn.answer_start),
                turn.filler_text, turn.answer_text, stages)


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f}"


HEADER = (f"{'#':>2}  {'caller asked':<34} {'filler':>7} {'answer':>7}  "
          f"{'EOU':>5} {'STT':>5} {'LLM':>5} {'fast':>5} {'TTS':>5} {'tokens':>6} {'cost USD':>10}")


def table(turns: Iterable[Turn]) -> str:
    """The per-turn table: ms after the caller stopped speaking until it heard the filler and the
    answer, then the worker's stage latencies (ms), tokens and cost."""
    turns = list(turns)
    lines = [HEADER, "-" * len(HEADER)]
    for number, turn in enumerate(turns, 1):
        s = turn.stages
        lines.append(
            f"{number:>2}  {turn.question[:34]:<34} {_ms(turn.filler_at):>7} {_ms(turn.answer_at):>7}  "
            f"{_ms(s.eou):>5} {_ms(s.stt):>5} {_ms(s.llm_main):>5} {_ms(s.llm_fast):>5} {_ms(s.tts):>5} "
            f"{s.tokens:>6} {s.cost:>10.7f}"
        )
        lines.append(f"    heard: \"{_clip(turn.filler_text)}\" then \"{_clip(turn.answer_text, 70)}\"")
    total_cost = sum(t.stages.cost for t in turns)
    total_tokens = sum(t.stages.tokens for t in turns)
    lines += [
        "-" * len(HEADER),
        f"{'':>2}  {'total':<34} {'':>7} {'':>7}  {'':>5} {'':>5} {'':>5} {'':>5} {'':>5} {total_tokens:>6} {total_cost:>10.7f}",
        "",
        "filler, answer: ms from the caller's end of speech to the first audio it heard (caller's clock).",
        "EOU: end of speech to turn committed; STT: to final transcript; LLM/fast: time to first token of",
        "the main and the pre-response model; TTS: time to first audio byte (mean per request). From the",
        "worker's /metrics; -: none measured in that turn. Cost at the VoiceAgent's spec.pricing: the",
        "local model is not sold anywhere, so it is charged a demo price (docs/demo.md).",
    ]
    return "\n".join(lines)


def _clip(text: str, width: int = 40) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def problems(turns: Sequence[Turn]) -> list[str]:
    """What keeps the turns from proving the idea: each turn's filler must be heard before its
    answer, and the conversation must have cost something."""
    found = [f"turn {n}: no filler audio before the answer audio (filler at {_ms(t.filler_at)} ms, "
             f"answer at {_ms(t.answer_at)} ms)" for n, t in enumerate(turns, 1) if not t.filler_first]
    if not turns:
        found.append("no turn was heard")
    elif sum(t.stages.cost for t in turns) <= 0:
        found.append("the turns cost nothing: the worker recorded no priced usage")
    return found
