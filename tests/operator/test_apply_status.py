"""The apply layer's comparison, and status conditions that only change when the world does."""

from __future__ import annotations

import pytest

from voiceagent_operator.apply import matches
from voiceagent_operator.status import (
    Condition,
    monitoring_condition,
    ollama_condition,
    render_conditions,
    status_patch,
    worker_conditions,
)

DESIRED = {
    "metadata": {"name": "w", "labels": {"a": "1"}},
    "spec": {
        "replicas": 2,
        "template": {"spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": "0.5", "gpu": 1}}}], "volumes": []}},
    },
}


def test_a_live_object_with_extra_server_fields_matches() -> None:
    live = {
        "metadata": {"name": "w", "labels": {"a": "1", "extra": "x"}, "uid": "u", "managedFields": [{}]},
        "spec": {
            "replicas": 2,
            "progressDeadlineSeconds": 600,
            "template": {"spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": "500m", "gpu": "1"}}, "terminationMessagePath": "/dev/x"}]}},
        },
        "status": {"readyReplicas": 2},
    }
    assert matches(DESIRED, live)


@pytest.mark.parametrize(
    "live_change",
    [
        lambda live: live["spec"].update(replicas=3),
        lambda live: live["metadata"]["labels"].update(a="2"),
        lambda live: live["spec"]["template"]["spec"]["containers"].append({"name": "sidecar"}),
        lambda live: live["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"].update(cpu="1"),
        lambda live: live["metadata"].pop("labels"),
    ],
)
def test_any_difference_in_a_field_the_operator_sets_does_not_match(live_change) -> None:
    import copy

    live = copy.deepcopy(DESIRED)
    live_change(live)
    assert not matches(DESIRED, live)


def test_strings_that_are_not_quantities_compare_exactly() -> None:
    assert not matches({"image": "a:1"}, {"image": "a:2"})
    assert not matches({"enabled": True}, {"enabled": 1})


def test_conditions_keep_their_transition_time_while_unchanged() -> None:
    first = render_conditions([Condition("Ready", True, "WorkersReady")], [], 1, "2026-01-01T00:00:00Z")
    again = render_conditions([Condition("Ready", True, "WorkersReady")], first, 1, "2026-01-01T00:05:00Z")
    flipped = render_conditions([Condition("Ready", False, "NoWorkerReady")], again, 2, "2026-01-01T00:09:00Z")
    assert again == first
    assert flipped[0]["lastTransitionTime"] == "2026-01-01T00:09:00Z"
    assert flipped[0]["observedGeneration"] == 2


def test_status_patch_is_none_when_nothing_changed() -> None:
    status = {"replicas": 1, "conditions": [{"type": "Ready"}]}
    assert status_patch(status, dict(status)) is None
    assert status_patch(status, {"replicas": 2, "conditions": [{"type": "Ready"}]}) == {"replicas": 2}


def test_worker_conditions_follow_the_deployment() -> None:
    ready, progressing = worker_conditions(None, 2)
    assert (ready.status, progressing.reason) == (False, "Creating")
    rolling = {"status": {"replicas": 2, "readyReplicas": 1, "updatedReplicas": 2}}
    ready, progressing = worker_conditions(rolling, 2)
    assert (ready.status, progressing.status, progressing.reason) == (True, True, "RollingOut")
    stable = {"status": {"replicas": 2, "readyReplicas": 2, "updatedReplicas": 2}}
    assert worker_conditions(stable, 2)[1].reason == "Stable"


def test_ollama_and_monitoring_conditions_give_a_reason() -> None:
    assert ollama_condition(False, None).reason == "Disabled"
    assert ollama_condition(True, None).reason == "PullingModels"
    assert ollama_condition(True, {"status": {"readyReplicas": 1}}).status is True
    missing = monitoring_condition(True, False)
    assert (missing.status, missing.reason) == (False, "ServiceMonitorAPIMissing")
    assert "Prometheus Operator" in missing.message
    assert monitoring_condition(True, True).status is True
