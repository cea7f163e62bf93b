"""README.md's reference tables are generated from the code and must not drift from it."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("readme_reference", ROOT / "scripts" / "readme_reference.py")
readme_reference = importlib.util.module_from_spec(spec)
spec.loader.exec_module(readme_reference)

README = (ROOT / "README.md").read_text()


def test_generated_tables_match_the_code():
    assert readme_reference.render(README) == README, "run `make docs`"


def test_every_worker_variable_and_metric_is_in_the_readme():
    from agent_worker.config import Settings, env_name
    from agent_worker.metric_names import CATALOGUE

    assert [env_name(f) for f in Settings.model_fields if f"`{env_name(f)}`" not in README] == []
    exported = [m.name + ("_total" if m.kind == "counter" else "") for m in CATALOGUE]
    assert [name for name in exported if f"`{name}`" not in README] == []


def test_every_voiceagent_field_is_in_the_readme():
    from voiceagent_operator.crd import spec_schema

    def leaves(path: str, schema: dict) -> list[str]:
        out = []
        for key, prop in schema.get("properties", {}).items():
            field = f"{path}.{key}"
            out += leaves(field, prop) if prop.get("properties") else [field]
        return out

    assert [f for f in leaves("spec", spec_schema()) if f"`{f}`" not in README] == []


def test_a_stale_table_is_detected():
    stale = README.replace("`AGENT_METRICS_PORT`", "`AGENT_OLD_PORT`", 1)
    assert readme_reference.render(stale) != stale


def test_readme_test_command_is_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    quick_start = README.split("## Quick start", 1)[1].split("##", 1)[0]
    test_command = re.search(r"^(make \S+)\s+# every test", quick_start, re.M).group(1)
    assert re.search(rf"^{re.escape(test_command)}$", ci, re.M)
