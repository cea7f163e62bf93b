"""The demo's per-turn figures: worker metrics split into turns, the printed table, the verdict."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

from demo.turns import Stages, Turn, combined, heard, per_turn, problems, snapshot, table

EXPOSITION = """\
# TYPE agent_worker_end_of_utterance_delay_seconds histogram
agent_worker_end_of_utterance_delay_seconds_sum 1.2
agent_worker_end_of_utterance_delay_seconds_count 2
# TYPE agent_worker_llm_ttft_seconds histogram
agent_worker_llm_ttft_seconds_sum{provider="ollama",model="m",role="main"} 0.9
agent_worker_llm_ttft_seconds_count{provider="ollama",model="m",role="main"} 3
agent_worker_llm_ttft_seconds_sum{provider="ollama",model="m",role="fast"} 0.2
agent_worker_llm_ttft_seconds_count{provider="ollama",model="m",role="fast"} 2
# TYPE agent_worker_llm_prompt_tokens counter
agent_worker_llm_prompt_tokens_total{provider="ollama",model="m",role="main"} 100
agent_worker_llm_prompt_tokens_total{provider="ollama",model="m",role="fast"} 40
# TYPE agent_worker_llm_completion_tokens counter
agent_worker_llm_completion_tokens_total{provider="ollama",model="m",role="main"} 12
# TYPE agent_worker_cost_usd counter
agent_worker_cost_usd_total{provider="ollama",model="m",kind="input"} 0.00001
agent_worker_cost_usd_total{provider="openai",model="tts-1",kind="characters"} 0.0003
"""

ZERO = {"tokens": 0.0, "cost": 0.0}


def stages(**changes) -> Stages:
    return replace(Stages(eou=0.5, stt=0.4, llm_main=0.3, llm_fast=0.1, tts=0.2, tokens=150, cost=0.0002), **changes)


def turn(filler_at=0.8, answer_at=1.6, **changes) -> Turn:
    return Turn("what is the capital of France", filler_at, answer_at, "Let me check.", "Paris.", stages(**changes))


def test_a_scrape_gives_cumulative_stage_sums_and_counts_tokens_and_cost():
    values = snapshot(EXPOSITION)

    assert values["eou.sum"] == 1.2 and values["eou.count"] == 2
    assert (values["llm_main.sum"], values["llm_main.count"]) == (0.9, 3)
    assert (values["llm_fast.sum"], values["llm_fast.count"]) == (0.2, 2)
    assert values["tokens"] == 152
    assert abs(values["cost"] - 0.00031) < 1e-12
    assert "tts.count" not in values  # nothing measured yet


def test_the_scrapes_of_several_worker_pods_add_up():
    one, other = snapshot(EXPOSITION), {"eou.sum": 0.3, "eou.count": 1.0, "tokens": 8.0, "cost": 0.0}

    total = combined([one, other])

    assert (total["eou.sum"], total["eou.count"], total["tokens"]) == (1.5, 3.0, 160.0)
    assert total["llm_main.count"] == 3 and abs(total["cost"] - 0.00031) < 1e-12
    assert combined([]) == ZERO


def test_each_turn_gets_the_metrics_recorded_between_its_end_of_speech_and_the_next_one():
    samples = [
        (0.0, dict(ZERO)),
        (1.0, {"eou.sum": 0.5, "eou.count": 1, "tokens": 100.0, "cost": 0.001}),
        (5.0, {"eou.sum": 0.5, "eou.count": 1, "tokens": 100.0, "cost": 0.001}),
        (6.0, {"eou.sum": 1.2, "eou.count": 2, "tokens": 180.0, "cost": 0.003}),
    ]

    first, second = per_turn(samples, speech_ends=[0.5, 5.5])

    assert (first.eou, first.tokens, first.cost) == (0.5, 100, 0.001)
    assert second.eou is not None and abs(second.eou - 0.7) < 1e-9
    assert second.tokens == 80 and abs(second.cost - 0.002) < 1e-12
    assert first.llm_main is None  # no main-LLM sample in the turn: shown as "-"


def test_heard_times_are_seconds_after_the_caller_stopped_speaking():
    caller_turn = SimpleNamespace(question="q", speech_end=100.0, first_audio=100.7, filler_start=100.7,
                                  answer_start=101.5, filler_text="Okay.", answer_text="Yes.")

    result = heard(caller_turn, stages())

    assert abs(result.filler_at - 0.7) < 1e-9 and abs(result.answer_at - 1.5) < 1e-9
    assert result.filler_first


def test_the_table_has_one_row_per_turn_in_milliseconds_with_what_was_heard_and_totals():
    text = table([turn(), turn(filler_at=None, llm_fast=None)])

    rows = text.splitlines()
    assert rows[2].split()[-9:] == ["800", "1600", "500", "400", "300", "100", "200", "150", "0.0002000"]
    assert 'heard: "Let me check." then "Paris."' in rows[3]
    assert rows[4].split()[-9:-7] == ["-", "1600"]
    assert "total" in text and "300" in text.split("total")[1] and "0.0004000" in text


def test_a_turn_without_filler_before_its_answer_fails_the_demo():
    assert problems([turn()]) == []
    assert problems([turn(filler_at=2.0, answer_at=1.0)])[0].startswith("turn 1: no filler audio before the answer")
    assert problems([turn(filler_at=None)])[0].startswith("turn 1: no filler audio")


def test_turns_that_cost_nothing_fail_the_demo():
    assert problems([turn(cost=0.0)]) == ["the turns cost nothing: the worker recorded no priced usage"]
    assert problems([]) == ["no turn was heard"]
