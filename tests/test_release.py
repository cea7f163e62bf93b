"""The release workflow publishes exactly what the chart, the manifests and the docs tell people to run.

The published references are read from .github/workflows/release.yml itself (its build-push tags and
its helm push), with the chart's versions put in for the step outputs, so renaming an image or a
registry in one place and not the other fails here.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "release.yml"
CHART = ROOT / "charts" / "agent-worker"
MANIFESTS = [ROOT / "manifests" / "agent-worker.yaml", *sorted((ROOT / "manifests" / "examples").glob("*.yaml"))]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# A full image reference: a registry host (it has a dot), a path and a tag.
FULL_REFERENCE = re.compile(r"\b[a-z0-9-]+(?:\.[a-z0-9-]+)+(?::\d+)?(?:/[a-z0-9._-]+)+:[A-Za-z0-9._-]*[A-Za-z0-9_-]")

_spec = importlib.util.spec_from_file_location("cluster_tools", ROOT / "tests" / "operator" / "tools.py")
cluster_tools = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cluster_tools)

CHART_META = yaml.safe_load((CHART / "Chart.yaml").read_text())
WORKFLOW_DOC = yaml.safe_load(WORKFLOW.read_text())


def _expressions() -> dict[str, str]:
    """What each `${{ ... }}` the published names use stands for in a release of this checkout."""
    values = {f"env.{name}": value for name, value in WORKFLOW_DOC["env"].items()}
    values["steps.chart.outputs.app_version"] = CHART_META["appVersion"]
    values["steps.chart.outputs.chart_version"] = CHART_META["version"]
    return values


def resolve(text: str) -> str:
    """`text` with the workflow's expressions and its workflow-level `$ENV` variables substituted."""
    values = _expressions()

    def expression(match: re.Match[str]) -> str:
        assert match[1] in values, f"release.yml: {match[0]} has no known value in a release"
        return values[match[1]]

    text = re.sub(r"\$\{\{\s*([\w.-]+)\s*\}\}", expression, text)
    return re.sub(r"\$\{?(\w+)\}?", lambda m: WORKFLOW_DOC["env"].get(m[1], m[0]), text)


def _steps() -> list[dict[str, Any]]:
    (job,) = WORKFLOW_DOC["jobs"].values()
    return job["steps"]


def published_images() -> set[str]:
    tags = [step["with"]["tags"] for step in _steps() if step.get("uses", "").startswith("docker/build-push-action@")]
    return {resolve(tag.strip()) for entry in tags for tag in entry.replace("\n", ",").split(",") if tag.strip()}


def helm_commands() -> dict[str, list[str]]:
    """The workflow's `helm <verb> ...` lines, arguments resolved, by verb."""
    commands = {}
    for step in _steps():
        for line in step.get("run", "").splitlines():
            if line.startswith("helm "):
                words = shlex.split(resolve(line.split("<<<")[0]))
                commands[words[1]] = words[2:]
    return commands


def images_in(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every `image:` string in a YAML document, with where it is."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "image" and isinstance(value, str):
                yield f"{path}.{key}", value
            yield from images_in(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from images_in(value, f"{path}.{index}")


def our_images(documents: list[Any]) -> list[tuple[str, str]]:
    """The images of ours: every one except the managed Ollama server's (a third-party image)."""
    return [(path, image) for document in documents for path, image in images_in(document) if ".ollama." not in path]


def test_the_workflow_publishes_the_worker_and_the_operator_image_at_the_app_version() -> None:
    images = published_images()
    assert {image.rsplit(":", 1)[1] for image in images} == {CHART_META["appVersion"]}
    assert {image.rsplit(":", 1)[0].rsplit("/", 1)[1] for image in images} == {"agent-worker", "voiceagent-operator"}


def test_the_chart_with_its_example_voiceagent_runs_exactly_the_published_images(tmp_path: Path) -> None:
    out = cluster_tools.run("helm", "template", "agent-worker", str(CHART), "--namespace", "agent-worker",
                            "--set", "exampleVoiceAgent.enabled=true", home=tmp_path / "helm")
    images = our_images([doc for doc in yaml.safe_load_all(out) if doc])
    assert {image for _, image in images} == published_images(), images


def test_the_chart_values_default_to_published_images() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    operator = values["operator"]["image"]
    defaults = {f"{operator['repository']}:{operator['tag'] or CHART_META['appVersion']}", values["exampleVoiceAgent"]["spec"]["image"]}
    assert defaults <= published_images(), defaults - published_images()


def test_every_image_in_the_plain_manifests_and_examples_is_published() -> None:
    published = published_images()
    for path in MANIFESTS:
        images = our_images(list(yaml.safe_load_all(path.read_text())))
        assert images, f"{path.name} names no image of ours"
        assert [(where, image) for where, image in images if image not in published] == [], path.name


def test_every_full_image_reference_in_the_docs_is_published() -> None:
    published = published_images()
    names = {image.rsplit(":", 1)[0].rsplit("/", 1)[1] for image in published}
    for path in DOCS:
        ours = [ref for ref in FULL_REFERENCE.findall(path.read_text())
                if ref.startswith("ghcr.io/") or ref.rsplit(":", 1)[0].rsplit("/", 1)[1] in names]
        assert [ref for ref in ours if ref not in published] == [], path.name
    assert published <= set(FULL_REFERENCE.findall((ROOT / "README.md").read_text())), "the README names both images"


def test_the_workflow_pushes_the_chart_under_its_name_and_version() -> None:
    helm = helm_commands()
    assert helm["package"] == [str(CHART.relative_to(ROOT))]
    archive, registry = helm["push"]
    assert archive == f"{CHART_META['name']}-{CHART_META['version']}.tgz", "helm package writes <name>-<version>.tgz"
    assert registry.startswith("oci://") and not registry.endswith("/")


def test_the_readme_installs_the_pushed_chart() -> None:
    _, registry = helm_commands()["push"]
    chart = f"{registry}/{CHART_META['name']}"
    installs = re.findall(r"helm install \S+ (oci://\S+) --version (\S+)", (ROOT / "README.md").read_text())
    assert installs == [(chart, CHART_META["version"])]


def test_the_workflow_runs_on_version_tags_and_by_hand_with_only_read_and_package_rights() -> None:
    triggers = WORKFLOW_DOC.get("on", WORKFLOW_DOC.get(True))  # YAML 1.1 reads the key `on` as true
    assert triggers["push"] == {"tags": ["v*"]} and "workflow_dispatch" in triggers
    assert WORKFLOW_DOC["permissions"] == {"contents": "read", "packages": "write"}


def check_tag(tmp_path: Path, ref_type: str, ref_name: str, chart: Path = CHART) -> tuple[int, str, str]:
    """Runs the workflow's tag check on `chart` as the runner would: bash, with a minimal `yq '.key' file`."""
    (check,) = [step for step in _steps() if step.get("id") == "chart"]
    (tmp_path / "yq").write_text(f"#!{sys.executable}\nimport sys, yaml\n"
                                 "print(yaml.safe_load(open(sys.argv[2]))[sys.argv[1].lstrip('.')])\n")
    (tmp_path / "yq").chmod(0o755)
    output = tmp_path / "output"
    output.write_text("")
    env = {**os.environ, **WORKFLOW_DOC["env"], "CHART": str(chart), "PATH": f"{tmp_path}:{os.environ['PATH']}",
           "GITHUB_REF_TYPE": ref_type, "GITHUB_REF_NAME": ref_name, "GITHUB_OUTPUT": str(output)}
    result = subprocess.run(["bash", "-e", "-c", check["run"]], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    return result.returncode, result.stdout, output.read_text()


def test_a_tag_v_app_version_releases_at_the_chart_versions(tmp_path: Path) -> None:
    rc, _, outputs = check_tag(tmp_path, "tag", f"v{CHART_META['appVersion']}")
    assert rc == 0
    assert outputs.splitlines() == [f"app_version={CHART_META['appVersion']}", f"chart_version={CHART_META['version']}"]


def test_another_tag_or_a_branch_releases_nothing_and_says_why(tmp_path: Path) -> None:
    for ref_type, ref_name in [("tag", "v9.9.9"), ("tag", CHART_META["appVersion"]), ("branch", "main")]:
        rc, stdout, outputs = check_tag(tmp_path, ref_type, ref_name)
        assert rc != 0 and outputs == "", ref_name
        assert stdout.startswith("::error::") and f"appVersion {CHART_META['appVersion']}" in stdout


def test_a_chart_version_other_than_the_app_version_releases_nothing(tmp_path: Path) -> None:
    chart = tmp_path / "chart"
    chart.mkdir()
    (chart / "Chart.yaml").write_text(yaml.safe_dump({**CHART_META, "version": "9.9.9"}))
    rc, stdout, outputs = check_tag(tmp_path, "tag", f"v{CHART_META['appVersion']}", chart)
    assert rc != 0 and outputs == "" and "version 9.9.9" in stdout


def test_actionlint_passes_the_workflow() -> None:
    result = subprocess.run([str(cluster_tools.tool("actionlint")), str(WORKFLOW.relative_to(ROOT))],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"actionlint:\n{result.stdout}{result.stderr}"
