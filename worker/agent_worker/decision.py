"""Whether and what to say before the answer: one pure decision per turn.

The rule: speak one short acknowledgement only when the answer will reach the caller at least
`late_after` seconds (1.2 s, as Inworld's "responsiveness" waits) after the end of their speech,
and stay silent otherwise. Times are at the caller's ear: audio the worker sends is heard
`playout_delay` later (WebRTC packetization, the network and the caller's jitter buffer), so the
worker's own moment of lateness is `late_after - playout_delay` after the end of speech. Whether
the answer will be late is known, not guessed, once a deadline has passed: that moment minus the
TTS's usual time to first audio. A main LLM whose first token has not come by then cannot be
heard before `late_after`. Before the deadline the
filler is said only when the session's answers are consistently slow: even the quickest of its
recent requests (main LLM plus TTS) would make this answer late. A high estimate alone never
speaks early, since on a day of mixed quick and slow answers it would talk over quick ones.
The phrase is never the previous filler, never one spoken within `min_gap` seconds of the last,
and must finish before the answer is due, so a started filler is never cut and never holds the
answer up.

`decide()` does no I/O: the agent gathers a `Turn` (what is known of this turn now), an
`Estimate` (how long the main LLM and the TTS have been taking in this session, see
`LatencyEstimator`) and a `History` (the previous fillers), and only carries the `Decision` out.
"""

from __future__ import annotations

import re
import statistics
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass


def normalize(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())


@dataclass(frozen=True)
class Options:
    late_after: float = 1.2
    """Seconds from the end of the caller's speech to the caller hearing the answer, from which an
    answer counts as late."""
    playout_delay: float = 0.15
    """Seconds from the worker sending audio to the caller hearing it (0.13 s measured over
    WebRTC on loopback; a real network adds its own)."""
    min_words: int = 3
    """Turns with fewer words ("yes", "thank you") get no filler: their answers are short."""
    min_gap: float = 0.0
    """Seconds that must pass between two fillers' starts (0: only the one-per-turn limit)."""
    max_first_audio_delay: float = 0.15
    """A phrase still to be synthesized is used only if its audio is expected within this."""
    margin: float = 0.1
    """A filler must end at least this long before the answer is due."""


@dataclass(frozen=True)
class Candidate:
    """A phrase the agent could say now: its text, where it comes from, and its timing."""

    text: str
    source: str  # "stock" (pre-synthesized) or "fast_llm"
    first_audio_delay: float  # seconds from now to its first audio frame
    duration: float  # seconds of audio


@dataclass(frozen=True)
class Turn:
    """What is known of the current turn at the moment of deciding (seconds, one clock)."""

    transcript: str
    now: float
    speech_ended_at: float
    llm_started_at: float | None = None
    llm_first_token_at: float | None = None
    answer_audio_ready: bool = False
    answer_failed: bool = False


@dataclass(frozen=True)
class Estimate:
    """Expected main-LLM time to first token and TTS time to first audio, from recent requests."""

    llm_ttft: float
    tts_ttfb: float
    llm_ttft_quickest: float | None = None
    tts_ttfb_quickest: float | None = None
    """The quickest of the session's recent requests; None until there are enough of them to
    call the session consistently slow (or quick)."""
    llm_ttft_samples: tuple[float, ...] = ()
    """The recent times to first token themselves."""


@dataclass(frozen=True)
class History:
    previous_filler: str | None = None
    last_filler_at: float | None = None


@dataclass(frozen=True)
class Decision:
    speak: bool
    reason: str
    phrase: Candidate | None = None
    answer_expected_after: float | None = None  # seconds after the end of speech, at the caller's ear
    recheck_at: float | None = None
    """Silent for now, but the main LLM's first token is still to come: decide again at this time
    (or at the first token, whichever is first), since a model slower than usual is a late answer."""

    @property
    def outcome(self) -> str:
        """The metrics label: `spoken`, or `skipped_<reason>`."""
        return "spoken" if self.speak else f"skipped_{self.reason}"


def expected_answer_at(turn: Turn, estimate: Estimate) -> float:
    """When the answer's first audio should reach the caller. A main LLM that has already taken
    longer than its usual time to first token is taken to be slow: its first token is expected
    a usual time to first token from now, not at once."""
    return max(expected_first_token_at(turn, estimate) + estimate.tts_ttfb, turn.now)


def expected_first_token_at(turn: Turn, estimate: Estimate) -> float:
    if turn.llm_first_token_at is not None:
        return turn.llm_first_token_at
    started = turn.llm_started_at if turn.llm_started_at is not None else turn.now
    first_token = started + estimate.llm_ttft
    # Later than usual: at least a usual time more, and at least as long again as it has taken
    # (the longer a request has run, the longer it has left), so a slow first answer of a session
    # is not taken to be always just about to come.
    return first_token if first_token > turn.now else turn.now + max(estimate.llm_ttft, turn.now - started)


def quickest_answer_at(turn: Turn, estimate: Estimate) -> float | None:
    """When the answer's first audio would come if this request were as quick as the quickest
    recent one (None while the session has too few requests to say)."""
    if estimate.llm_ttft_quickest is None or estimate.tts_ttfb_quickest is None:
        return None
    started = turn.llm_started_at if turn.llm_started_at is not None else turn.now
    return max(started + estimate.llm_ttft_quickest, turn.now) + estimate.tts_ttfb_quickest


def earliest_late_answer_at(turn: Turn, estimate: Estimate) -> float:
    """Past the deadline without a first token: the answer can come as early as the quickest of the
    session's requests that took longer than this one has so far (or, with none, a usual time from
    now). A phrase must end before that, so the quickest of the slow answers is not held up."""
    started = turn.llm_started_at if turn.llm_started_at is not None else turn.now
    later = [s for s in estimate.llm_ttft_samples if started + s > turn.now]
    if not later:
        return expected_answer_at(turn, estimate)
    tts = estimate.tts_ttfb_quickest if estimate.tts_ttfb_quickest is not None else estimate.tts_ttfb
    return started + min(later) + tts


def late_at(turn: Turn, options: Options) -> float:
    """The moment from which audio the worker sends reaches the caller late."""
    return turn.speech_ended_at + options.late_after - options.playout_delay


def late_deadline(turn: Turn, estimate: Estimate, options: Options) -> float:
    """The moment from which an answer whose first token is still missing is late for sure."""
    return late_at(turn, options) - estimate.tts_ttfb


def decide(turn: Turn, estimate: Estimate, history: History, candidates: Sequence[Candidate], options: Options) -> Decision:
    if len(normalize(turn.transcript).split()) < options.min_words:
        return Decision(False, "trivial")
    if turn.answer_audio_ready:
        return Decision(False, "answer_first")
    if turn.answer_failed:
        return Decision(False, "answer_failed")

    def heard_after(at: float) -> float:
        return at + options.playout_delay - turn.speech_ended_at

    if turn.llm_first_token_at is not None:
        answer_at = expected_answer_at(turn, estimate)
        if answer_at < late_at(turn, options):
            return Decision(False, "answer_soon", answer_expected_after=heard_after(answer_at))
    else:
        quickest = quickest_answer_at(turn, estimate)
        if quickest is not None and quickest >= late_at(turn, options):
            answer_at = quickest  # consistently slow: late even at its quickest; end before that
        else:
            deadline = late_deadline(turn, estimate, options)
            if turn.now < deadline:
                expected = heard_after(expected_answer_at(turn, estimate))
                return Decision(False, "answer_soon", answer_expected_after=expected, recheck_at=deadline)
            answer_at = max(earliest_late_answer_at(turn, estimate), late_at(turn, options))
    after = heard_after(answer_at)
    if history.last_filler_at is not None and turn.now - history.last_filler_at < options.min_gap:
        return Decision(False, "too_soon", answer_expected_after=after)
    previous = normalize(history.previous_filler) if history.previous_filler else None
    for candidate in candidates:
        if previous is not None and normalize(candidate.text) == previous:
            continue
        if candidate.first_audio_delay > options.max_first_audio_delay:
            continue
        if turn.now + candidate.first_audio_delay + candidate.duration + options.margin > answer_at:
            continue
        return Decision(True, "answer_late", candidate, answer_expected_after=after)
    # Still no first token: look again when the answer was due; if it has not come by then, it is
    # later than thought and a phrase may fit.
    recheck = answer_at if turn.llm_first_token_at is None else None
    return Decision(False, "no_phrase_fits", answer_expected_after=after, recheck_at=recheck)


class LatencyEstimator:
    """A live estimate per session of the main LLM's time to first token and the TTS's time to
    first audio: a high quantile (p90) of the last `window` requests, so a session whose answers
    are sometimes slow is expected to be slow until its first token says otherwise, and the
    quickest of them once there are `min_samples`. Before any request the priors stand."""

    def __init__(self, *, llm_prior: float, tts_prior: float, window: int = 20, quantile: float = 0.9, min_samples: int = 3) -> None:
        self._min_samples = min_samples
        self._llm: deque[float] = deque(maxlen=window)
        self._tts: deque[float] = deque(maxlen=window)
        self._priors = (llm_prior, tts_prior)
        self._quantile = quantile

    def observe_llm_ttft(self, seconds: float) -> None:
        if seconds >= 0:
            self._llm.append(seconds)

    def observe_tts_ttfb(self, seconds: float) -> None:
        if seconds >= 0:
            self._tts.append(seconds)

    def estimate(self) -> Estimate:
        return Estimate(self._high(self._llm, self._priors[0]), self._high(self._tts, self._priors[1]),
                        self._quickest(self._llm), self._quickest(self._tts), tuple(self._llm))

    def _quickest(self, samples: deque[float]) -> float | None:
        return min(samples) if len(samples) >= self._min_samples else None

    def _high(self, samples: deque[float], prior: float) -> float:
        if not samples:
            return prior
        if len(samples) == 1:
            return samples[0]
        cuts = statistics.quantiles(samples, n=100, method="inclusive")
        return cuts[round(self._quantile * 100) - 1]
