"""`make demo-offline` (agent-worker demo): keyless turns over the real audio path, one table row each."""

from __future__ import annotations

import io

from agent_worker.demo import QUESTIONS, run_demo


async def test_demo_prints_one_row_per_turn_with_latencies_tokens_and_cost():
    out = io.StringIO()
    summary = await run_demo(3, out=out)
    header, *rows = [line for line in out.getvalue().splitlines()[:4]]
    assert header.split()[:3] == ["turn", "caller", "said"]
    assert [row.split()[0] for row in rows] == ["1", "2", "3"]
    assert QUESTIONS[0][:30] in rows[0]
    assert "skipped_trivial" in rows[2]  # "thanks" gets no filler
    assert summary["turns"] == 3
    assert summary["cost_usd"]["total"] > 0
    assert {u["role"] for u in summary["usage"]} == {"main", "fast", "stt", "tts"}
