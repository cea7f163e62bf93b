"""Worker pods that cannot start show in the VoiceAgent's status, in the kubelet's words, with no secret."""

from __future__ import annotations

import pytest
from kubelet import (
    CONTAINER,
    IMAGE,
    crash_loop,
    err_image_pull,
    image_pull_back_off,
    running,
    terminated,
    waiting,
    worker_pod,
)

from voiceagent_operator.status import (
    CONTAINER_CONFIG_INVALID,
    IMAGE_PULL_FAILED,
    MAX_DETAIL_CHARS,
    WORKER_CRASHING,
    Condition,
    failure_conditions,
    worker_failure,
)

NEW_POD = "support-worker-7d9c5b6f4-x2xlq"


def test_serving_and_starting_workers_are_no_failure() -> None:
    pods = [
        worker_pod("support-worker-5f6d-a", running()),
        worker_pod("support-worker-5f6d-b", running(ready=False)),  # still starting: the startup probe decides
        worker_pod("support-worker-5f6d-c", waiting("ContainerCreating", ""), ip=None),
    ]
    assert worker_failure(pods) is None
    assert worker_failure([]) is None


def test_an_image_that_cannot_be_pulled_names_the_pod_container_image_and_kubelet_message() -> None:
    failure = worker_failure([worker_pod("support-worker-5f6d-a", running()), worker_pod(NEW_POD, image_pull_back_off())])
    assert failure is not None
    assert failure.reason == IMAGE_PULL_FAILED
    assert failure.message == (
        f'pod {NEW_POD}: container {CONTAINER} image {IMAGE}: ImagePullBackOff: Back-off pulling image "{IMAGE}"'
    )
    assert failure.condition() == Condition("Degraded", True, IMAGE_PULL_FAILED, failure.message)


@pytest.mark.parametrize("reason", ["ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"])
def test_every_image_pull_reason_is_an_image_pull_failure(reason: str) -> None:
    failure = worker_failure([worker_pod(NEW_POD, waiting(reason, "the kubelet's message"))])
    assert failure is not None and failure.reason == IMAGE_PULL_FAILED
    assert failure.message.endswith(f"{reason}: the kubelet's message")


def test_the_kubelet_retrying_a_pull_does_not_make_a_new_event() -> None:
    pulling = worker_failure([worker_pod(NEW_POD, err_image_pull())])
    backing_off = worker_failure([worker_pod(NEW_POD, image_pull_back_off())])
    other_image = worker_failure([worker_pod(NEW_POD, image_pull_back_off("ghcr.io/agent-worker/agent-worker:0.2.1"))])
    assert pulling is not None and backing_off is not None and other_image is not None
    assert "not found" in pulling.message
    assert pulling.event_key == backing_off.event_key
    assert other_image.event_key != backing_off.event_key


@pytest.mark.parametrize(
    ("reason", "message"),
    [
        ("CreateContainerConfigError", 'secret "groq" not found'),
        ("CreateContainerConfigError", "couldn't find key GROQ_API_KEY in Secret voice/groq"),
        ("CreateContainerError", "failed to reserve container name"),
        ("RunContainerError", "failed to create containerd task: exec: \"agent-worker\": executable file not found"),
    ],
)
def test_a_container_the_kubelet_cannot_create_is_a_config_failure(reason: str, message: str) -> None:
    failure = worker_failure([worker_pod(NEW_POD, waiting(reason, message))])
    assert failure is not None and failure.reason == CONTAINER_CONFIG_INVALID
    assert failure.message == f"pod {NEW_POD}: container {CONTAINER} image {IMAGE}: {reason}: {message}"


def test_a_crash_loop_shows_the_exit_code_and_the_workers_last_line() -> None:
    said = (
        '{"message": "starting worker", "level": "INFO"}\n'
        "agent-worker: GROQ_API_KEY is not set but AGENT_LLM_PROVIDER=groq needs it: put the key in a Secret "
        "and expose it as GROQ_API_KEY, or choose another provider\n"
    )
    failure = worker_failure([worker_pod(NEW_POD, crash_loop(exit_code=2, message=said))])
    assert failure is not None and failure.reason == WORKER_CRASHING
    assert failure.message == (
        f"pod {NEW_POD}: container {CONTAINER} image {IMAGE}: CrashLoopBackOff: last exit code 2 (Error): "
        "agent-worker: GROQ_API_KEY is not set but AGENT_LLM_PROVIDER=groq needs it: put the key in a Secret "
        "and expose it as GROQ_API_KEY, or choose another provider"
    )


def test_a_worker_that_exits_0_also_crash_loops() -> None:
    failure = worker_failure([worker_pod(NEW_POD, crash_loop(exit_code=0, reason="Completed"))])
    assert failure is not None and failure.reason == WORKER_CRASHING
    assert failure.message.endswith("CrashLoopBackOff: last exit code 0 (Completed)")


def test_between_crashes_the_failure_stays_with_the_same_event_key() -> None:
    looping = worker_failure([worker_pod(NEW_POD, crash_loop(exit_code=137, reason="OOMKilled"))])
    restarted = worker_failure([worker_pod(NEW_POD, running(ready=False, restarts=5, last=terminated(137, "OOMKilled")))])
    exited = worker_failure([worker_pod(NEW_POD, {**running(ready=False), "state": terminated(1, "Error")})])
    assert looping is not None and restarted is not None and exited is not None
    assert restarted.message.endswith("Restarted: last exit code 137 (OOMKilled)")
    assert exited.message.endswith("Terminated: last exit code 1 (Error)")
    assert looping.event_key == restarted.event_key == exited.event_key


def test_a_worker_ready_again_after_a_crash_is_no_failure() -> None:
    recovered = worker_pod(NEW_POD, running(ready=True, restarts=1, last=terminated(137, "OOMKilled")))
    assert worker_failure([recovered]) is None


def test_terminating_and_finished_pods_are_ignored() -> None:
    leaving = worker_pod("support-worker-old", crash_loop(), deleting=True)
    evicted = worker_pod("support-worker-evicted", {**running(ready=False), "state": terminated(137, "Error")})
    evicted["status"]["phase"] = "Failed"
    assert worker_failure([leaving, evicted]) is None


def test_the_first_failing_pod_by_name_is_named_and_the_others_counted() -> None:
    pods = [worker_pod(f"support-worker-7d9c-{n}", image_pull_back_off()) for n in ("c", "a", "b")]
    failure = worker_failure([worker_pod("support-worker-5f6d-z", running()), *pods])
    assert failure is not None
    assert failure.pod == "support-worker-7d9c-a" and failure.failing_pods == 3
    assert failure.message.endswith("(and 2 more failing pods)")


def test_secret_values_in_a_workers_last_words_are_masked() -> None:
    said = 'boom: GROQ_API_KEY=gsk_live_123 LIVEKIT_API_SECRET="s3cr3t" {"api_key": "sk-abc", "token": "t0k"}'
    failure = worker_failure([worker_pod(NEW_POD, crash_loop(exit_code=1, message=said))])
    assert failure is not None
    for secret in ("gsk_live_123", "s3cr3t", "sk-abc", "t0k"):
        assert secret not in failure.message
    assert "GROQ_API_KEY=***" in failure.message


def test_a_long_message_is_one_capped_line() -> None:
    failure = worker_failure([worker_pod(NEW_POD, crash_loop(exit_code=1, message="Traceback\n" + "x" * 5000))])
    assert failure is not None
    assert "\n" not in failure.message and "Traceback" not in failure.message
    assert failure.detail.endswith("...") and len(failure.detail) < MAX_DETAIL_CHARS + 40


def test_ready_workers_keep_ready_true_while_the_rollout_waits_for_a_fix() -> None:
    failure = worker_failure([worker_pod(NEW_POD, image_pull_back_off())])
    assert failure is not None
    serving = Condition("Ready", True, "WorkersReady", "2 of 2 workers ready")
    ready, progressing = failure_conditions(failure, serving, desired=2, ready_count=2)
    assert ready == serving
    assert (progressing.status, progressing.reason) == (False, IMAGE_PULL_FAILED)
    none_ready = Condition("Ready", False, "NoWorkerReady", "0 of 1 workers ready")
    ready, _ = failure_conditions(failure, none_ready, desired=1, ready_count=0)
    assert (ready.status, ready.reason, ready.message) == (False, IMAGE_PULL_FAILED, failure.message)
