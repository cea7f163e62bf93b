"""docs/worker.md documents every setting and every metric the code defines."""

from __future__ import annotations

from pathlib import Path

from agent_worker.config import Settings, env_name
from agent_worker.metric_names import CATALOGUE

DOC = (Path(__file__).parents[2] / "docs" / "worker.md").read_text()


def test_every_environment_variable_is_documented():
    missing = [env_name(field) for field in Settings.model_fields if f"`{env_name(field)}`" not in DOC]
    assert missing == []


def test_every_metric_is_documented_under_its_exported_name():
    exported = [m.name + ("_total" if m.kind == "counter" else "") for m in CATALOGUE]
    assert [name for name in exported if f"`{name}`" not in DOC] == []
