"""Generates README.md's reference tables from the code's single sources of truth.

Run `python scripts/readme_reference.py` to rewrite the tables, `--check` to fail on drift.
Each table sits between `<!-- BEGIN GENERATED: name -->` and `<!-- END GENERATED: name -->`.
"""

from __future__ import annotations

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
        description = field.description or f"{name.replace('_', ' ')} (deliver from a Secret)"
        rows.append(f"| `{env_name(name)}` | {_cell(f'`{default}`' if default != '' else '')} | {_cell(description)} |")
    return "\n".join(rows)


TABLES: dict[str, Callable[[], str]] = {"config": config_table}


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
