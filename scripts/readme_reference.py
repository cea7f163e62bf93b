"""Generates README.md's reference tables from the code's single sources of truth.

Run `python scripts/readme_reference.py` to rewrite the tables, `--check` to fail on drift.
Each table sits between `<!-- BEGIN GENERATED: name -->` and `<!-- END GENERATED: name -->`.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def config_table() -> str:
    from agent_worker.config import Settings, env_name

    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        if default in (None, "", [], {}):
            default = ""
        description = field.description or ""
        rows.append(f"| `{env_name(name)}` | {_cell(f'`{default}`' if default != '' else '')} | {_cell(description)} |")
    return "\n".join(rows)


def metrics_table() -> str:
    from agent_worker.metric_names import CATALOGUE

    rows = ["| Metric | Type | Labels | Meaning |", "|---|---|---|---|"]
    for metric in CATALOGUE:
        name = metric.name + ("_total" if metric.kind == "counter" else "")
        labels = ", ".join(metric.labels) or "-"
        rows.append(f"| `{name}` | {metric.kind} | {labels} | {_cell(metric.help)} |")
    return "\n".join(rows)


def _schema_rows(path: str, schema: dict, required: set[str]) -> list[str]:
    rows = []
    for key, prop in schema.get("properties", {}).items():
        field = f"{path}.{key}" if path else key
        if prop.get("type") == "object" and prop.get("properties"):
            rows += _schema_rows(field, prop, set(prop.get("required", [])))
            continue
        kind = prop.get("type", "")
        if prop.get("enum"):
            kind = " \\| ".join(f"`{value}`" for value in prop["enum"])
        default = prop.get("default")
        shown = "required" if key in required else (f"`{json.dumps(default)}`" if default not in (None, "", [], {}) else "")
        rows.append(f"| `{field}` | {kind} | {shown} | {_cell(prop.get('description'))} |")
    return rows


def crd_table() -> str:
    from voiceagent_operator.crd import spec_schema

    schema = spec_schema()
    header = ["| Field | Type | Default | Meaning |", "|---|---|---|---|"]
    return "\n".join(header + _schema_rows("spec", schema, set(schema.get("required", []))))


TABLES: dict[str, Callable[[], str]] = {"config": config_table, "metrics": metrics_table, "crd": crd_table}


def render(text: str) -> str:
    for name, build in TABLES.items():
        pattern = re.compile(
            rf"(<!-- BEGIN GENERATED: {name} -->\n)(?:.*?\n)?(<!-- END GENERATED: {name} -->)", re.DOTALL
        )
        if not pattern.search(text):
            raise SystemExit(f"README.md has no '<!-- BEGIN GENERATED: {name} -->' block")
        text = pattern.sub(lambda m: m.group(1) + build() + "\n" + m.group(2), text)
    return text


def main(argv: list[str]) -> int:
    current = README.read_text()
    wanted = render(current)
    if "--check" in argv:
        if wanted != current:
            print("README.md reference tables are out of date: run `make docs`", file=sys.stderr)
            return 1
        return 0
    README.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
