"""What to apply (`apply.decide_apply`), and status conditions that only change when the world does."""

from __future__ import annotations

from decimal import Decimal

import pytest
from kubernetes.utils.quantity import parse_quantity

from voiceagent_operator.apply import CREATE, REFUSE, SKIP, UPDATE, decide_apply, quantity, stamped
from voiceagent_operator.naming import APPLIED_HASH_ANNOTATION
from voiceagent_operator.builders.ollama_pull import ModelsState
from voiceagent_operator.status import (
    Condition,
    Problem,
    degraded_condition,
    monitoring_condition,
    ollama_condition,
    ollama_ready,
    render_conditions,
    rooms_condition,
    status_patch,
    worker_conditions,
)

OWNER = {"apiVersion": "agentworker.io/v1alpha1", "kind": "VoiceAgent", "name": "va", "uid": "uid-1", "controller": True}


def desired(**pod_spec) -> dict:
    return stamped({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "va-worker", "namespace": "voice", "labels": {"a": "1"}, "ownerReferences": [OWNER]},
        "spec": {"replicas": 2, "template": {"spec": {
            "containers": [{"name": "c", "image": "w:1", "resources": {"requests": {"cpu": "0.5"}},
                            "ports": [{"containerPort": 9100, "protocol": "TCP"}]}], **pod_spec}}},
    })


def fields(pod_spec_fields: dict | None = None) -> dict:
    """The fieldsV1 an apiserver records for our apply of `desired()` (plus extra pod spec fields)."""
    return {
        "f:metadata": {"f:annotations": {f"f:{APPLIED_HASH_ANNOTATION}": {}}, "f:labels": {"f:a": {}},
                       "f:ownerReferences": {'k:{"uid":"uid-1"}': {}}},
        "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {
            "f:containers": {'k:{"name":"c"}': {
                ".": {}, "f:name": {}, "f:image": {}, "f:resources": {"f:requests": {"f:cpu": {}}},
                "f:ports": {'k:{"containerPort":9100,"protocol":"TCP"}': {".": {}, "f:containerPort": {}, "f:protocol": {}}},
            }}, **(pod_spec_fields or {})}}},
    }


def live_of(manifest: dict, owned: dict | None, manager: str = "voiceagent-operator", **changes) -> dict:
    """What the apiserver returns: our manifest as stored (quantities canonical, defaults added), managedFields."""
    import copy

    live = copy.deepcopy(manifest)
    container = live["spec"]["template"]["spec"]["containers"][0]
    container["resources"]["requests"]["cpu"] = "500m"
    container["terminationMessagePath"] = "/dev/termination-log"
    live["spec"]["progressDeadlineSeconds"] = 600
    live["metadata"].update(uid="child-uid", resourceVersion="7")
    if owned is not None:
        live["metadata"]["managedFields"] = [
            {"manager": manager, "operation": "Apply", "apiVersion": "apps/v1", "fieldsType": "FieldsV1", "fieldsV1": owned},
            {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status", "fieldsV1": {"f:status": {}}},
        ]
    for key, value in changes.items():
        live["spec"]["template"]["spec"][key] = value
    return live


def test_a_missing_child_is_created() -> None:
    assert decide_apply(desired(), None, "uid-1").action == CREATE


def test_a_child_as_last_applied_is_skipped_though_quantities_are_stored_in_another_form() -> None:
    want = desired()
    assert decide_apply(want, live_of(want, fields()), "uid-1").action == SKIP


def test_a_field_rewritten_by_admission_is_not_a_difference() -> None:
    want = desired()
    live = live_of(want, fields())
    live["spec"]["template"]["spec"]["containers"][0]["image"] = "registry.mirror/w:1"  # a mutating policy's rewrite
    assert decide_apply(want, live, "uid-1").action == SKIP


def test_a_field_we_own_and_no_longer_want_is_removed() -> None:
    before = desired(nodeSelector={"gpu": "yes"}, tolerations=[{"key": "k", "operator": "Exists"}])
    live = live_of(before, fields({"f:nodeSelector": {"f:gpu": {}}, "f:tolerations": {}}),
                   nodeSelector={"gpu": "yes"}, tolerations=[{"key": "k", "operator": "Exists"}])

    decision = decide_apply(desired(), live, "uid-1")

    assert decision.action == UPDATE
    assert decision.removed == ("spec.template.spec.nodeSelector", "spec.template.spec.tolerations")
    assert "removed spec.template.spec.nodeSelector" in decision.reason


def test_an_owner_reference_we_no_longer_want_is_removed() -> None:
    want = desired()
    live = live_of(want, fields())
    unowned = stamped({**{k: v for k, v in want.items() if k != "metadata"},
                       "metadata": {k: v for k, v in want["metadata"].items() if k not in ("ownerReferences", "annotations")}})
    assert decide_apply(unowned, live, "uid-1").removed == ("metadata.ownerReferences",)


def test_a_changed_value_is_applied_and_named() -> None:
    before = desired()
    after = stamped({**before, "spec": {**before["spec"], "replicas": 3}})
    decision = decide_apply(after, live_of(before, fields()), "uid-1")
    assert (decision.action, decision.changed) == (UPDATE, ("spec.replicas",))


def test_a_field_another_manager_took_over_is_taken_back() -> None:
    want = desired()
    owned = fields()
    del owned["f:spec"]["f:replicas"]  # `kubectl scale deployment` now owns it
    decision = decide_apply(want, live_of(want, owned), "uid-1")
    assert (decision.action, decision.changed) == (UPDATE, ("spec.replicas",))


def test_an_object_someone_else_created_is_never_touched() -> None:
    want = desired()
    theirs = live_of(want, fields(), manager="kubectl")
    theirs["metadata"].pop("ownerReferences")
    controlled = live_of(want, fields())
    controlled["metadata"]["ownerReferences"] = [{**OWNER, "kind": "Application", "name": "argo", "uid": "other"}]

    assert decide_apply(want, theirs, "uid-1").action == REFUSE
    assert "not created by voiceagent-operator" in decide_apply(want, theirs, "uid-1").reason
    assert decide_apply(want, controlled, "uid-1").action == REFUSE
    assert "Application argo" in decide_apply(want, controlled, "uid-1").reason


def test_an_object_without_controller_that_we_applied_is_ours_again() -> None:
    want = desired()
    retained = stamped({**want, "metadata": {k: v for k, v in want["metadata"].items() if k != "ownerReferences"}})
    owned = fields()
    del owned["f:metadata"]["f:ownerReferences"]
    live = live_of(retained, owned)  # a retained model volume: never owned, then the policy becomes Delete
    decision = decide_apply(want, live, "uid-1")
    assert decision.action == UPDATE and decision.changed[0].startswith("metadata.ownerReferences")


def test_without_managed_fields_only_the_hash_decides() -> None:
    want = desired()
    assert decide_apply(want, live_of(want, None), "uid-1").action == SKIP


def test_degraded_names_every_problem_and_rooms_observed_names_the_pods() -> None:
    degraded = degraded_condition([Problem("ChildNotOwned", "Deployment/va-worker exists"), Problem("ApplyFailed", "x")])
    assert (degraded.status, degraded.reason, degraded.message) == (True, "ChildNotOwned", "Deployment/va-worker exists\nx")
    assert degraded_condition([]).reason == "AsExpected"
    unreadable = rooms_condition(("w-1", "w-2"))
    assert (unreadable.status, unreadable.reason) == (False, "PodsUnreadable") and "w-1, w-2" in unreadable.message
    assert rooms_condition(()).status is True


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
    serving = {"status": {"readyReplicas": 1}}
    pulling = ModelsState(False, "PullingModels", "Job support-pull-0123456789 is pulling tiny:1b")
    pulled = ModelsState(True, "ModelsPulled", "Ollama holds tiny:1b (Job support-pull-0123456789)")
    assert ollama_condition(False, None, None).reason == "Disabled"
    assert ollama_ready(False, None, None) is None
    # Not pulled: the Job's reason, in OllamaReady and as Ready's ModelsNotPulled, whether the pod serves or not.
    for deployment in (None, serving):
        condition = ollama_condition(True, deployment, pulling)
        assert (condition.status, condition.reason) == (False, "PullingModels")
        assert "support-pull-0123456789" in condition.message
        ready = ollama_ready(True, deployment, pulling)
        assert (ready.status, ready.reason, ready.message) == (False, "ModelsNotPulled", pulling.message)
    assert "not ready yet" in ollama_condition(True, None, pulling).message
    # Pulled but the pod not ready; then both.
    assert (ollama_condition(True, None, pulled).reason, ollama_ready(True, None, pulled).reason) == ("OllamaNotReady",) * 2
    served = ollama_condition(True, serving, pulled)
    assert (served.status, served.reason, served.message) == (True, "ModelsPulled", pulled.message)
    assert ollama_ready(True, serving, pulled) is None
    missing = monitoring_condition(True, False)
    assert (missing.status, missing.reason) == (False, "ServiceMonitorAPIMissing")
    assert "Prometheus Operator" in missing.message
    assert monitoring_condition(True, True).status is True


@pytest.mark.parametrize("text", ["500m", "0.5", "1", "2Gi", "1e3", "1E3", "100Mi", "1k", "1.5G", "12e-3", "1Ki", "3E", 2, 0.25])
def test_quantities_are_read_as_the_official_client_reads_them(text) -> None:
    assert quantity(text) == Decimal(parse_quantity(text))


@pytest.mark.parametrize("text", ["abc", "Mi", "1Q", "", "1.2.3", "1mm"])
def test_what_is_not_a_quantity_is_refused(text) -> None:
    with pytest.raises((ValueError, ArithmeticError)):
        quantity(text)
