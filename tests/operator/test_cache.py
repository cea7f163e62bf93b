"""The reconciliation's reads from the watched children: labelled listings and our own deletes."""

from __future__ import annotations

from typing import Any

from voiceagent_operator.cache import Cache, index_child, index_name
from voiceagent_operator.kube import Kube

JOBS = index_name("jobs")


class NoApiserver(Kube):
    """Any request fails the test: everything asked here must come from the cache."""

    def __init__(self) -> None:
        pass

    async def request(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"the cache sent a request: {args}")


def job(name: str, component: str, instance: str = "local", namespace: str = "voice", version: int = 1) -> dict[str, Any]:
    labels = {"app.kubernetes.io/component": component, "app.kubernetes.io/instance": instance}
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": namespace, "labels": labels, "resourceVersion": str(version)}}


def watched(*jobs: dict[str, Any]) -> dict[tuple[str, str, str], list[Any]]:
    """A Kopf index as handlers see it: key -> the values the indexer returned for it."""
    index: dict[tuple[str, str, str], list[Any]] = {}
    for body in jobs:
        for key, value in index_child(body).items():
            index.setdefault(key, []).append(value)
    return index


async def test_labelled_lists_the_watched_objects_of_one_namespace_with_every_label() -> None:
    index = watched(job("local-pull-a", "ollama-pull"), job("local-pull-b", "ollama-pull"),
                    job("other-pull-a", "ollama-pull", instance="other"), job("local-pull-c", "ollama-pull", namespace="elsewhere"),
                    job("local-backup", "backup"))
    cache = Cache(NoApiserver())
    cache.attach({JOBS: index})
    wanted = {"app.kubernetes.io/component": "ollama-pull", "app.kubernetes.io/instance": "local"}
    found = await cache.labelled("batch/v1", "Job", "voice", wanted)
    assert [j["metadata"]["name"] for j in found] == ["local-pull-a", "local-pull-b"]
    cache.remember(job("local-pull-d", "ollama-pull", version=7))  # our own create, not watched yet
    found = await cache.labelled("batch/v1", "Job", "voice", wanted)
    assert [j["metadata"]["name"] for j in found] == ["local-pull-a", "local-pull-b", "local-pull-d"]


async def test_our_delete_hides_the_object_until_the_watch_brings_it() -> None:
    index = watched(job("local-pull-a", "ollama-pull"))
    cache = Cache(NoApiserver())
    cache.attach({JOBS: index})
    cache.removed("Job", "voice", "local-pull-a")
    assert await cache.get("batch/v1", "Job", "voice", "local-pull-a", wanted=False) is None
    assert await cache.labelled("batch/v1", "Job", "voice", {"app.kubernetes.io/instance": "local"}) == []
    index.clear()  # the watch brought the deletion
    assert await cache.get("batch/v1", "Job", "voice", "local-pull-a", wanted=False) is None
    # Created again under the same name (the model list came back): the new object is seen.
    index.update(watched(job("local-pull-a", "ollama-pull", version=9)))
    assert (await cache.get("batch/v1", "Job", "voice", "local-pull-a"))["metadata"]["resourceVersion"] == "9"
