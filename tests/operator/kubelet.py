"""Worker pods as a kubelet reports them: ready, pulling a bad image, missing a Secret, crash-looping."""

from __future__ import annotations

from typing import Any

IMAGE = "ghcr.io/agent-worker/agent-worker:0.2.0"
CONTAINER = "agent-worker"


def worker_pod(
    name: str,
    container: dict[str, Any],
    *,
    ip: str | None = "10.244.1.17",
    labels: dict[str, str] | None = None,
    deleting: bool = False,
) -> dict[str, Any]:
    """A worker pod with one container status; Ready when the container is."""
    ready = "True" if container.get("ready") else "False"
    running = "running" in container["state"]
    status: dict[str, Any] = {
        "phase": "Running" if running else "Pending",
        "conditions": [
            {"type": "PodReadyToStartContainers", "status": "True"},
            {"type": "Initialized", "status": "True"},
            {"type": "Ready", "status": ready, **({} if ready == "True" else {"reason": "ContainersNotReady"})},
            {"type": "ContainersReady", "status": ready},
            {"type": "PodScheduled", "status": "True"},
        ],
        "hostIP": "10.0.0.5",
        "qosClass": "Burstable",
        "startTime": "2026-12-02T10:00:00Z",
        "containerStatuses": [container],
    }
    if ip:
        status["podIP"] = ip
        status["podIPs"] = [{"ip": ip}]
    metadata: dict[str, Any] = {"name": name, "labels": dict(labels or {}), "resourceVersion": "1"}
    if deleting:
        metadata["deletionTimestamp"] = "2026-12-02T10:05:00Z"
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "status": status}


def _container(state: dict[str, Any], *, ready: bool = False, restarts: int = 0, last: dict[str, Any] | None = None,
               image: str = IMAGE) -> dict[str, Any]:
    return {
        "name": CONTAINER,
        "image": image,
        "imageID": "" if "waiting" in state and not restarts else f"{image}@sha256:4f1c",
        "containerID": "" if "waiting" in state and not restarts else "containerd://9a1e",
        "lastState": last or {},
        "ready": ready,
        "restartCount": restarts,
        "started": "running" in state,
        "state": state,
    }


def running(ready: bool = True, restarts: int = 0, last: dict[str, Any] | None = None) -> dict[str, Any]:
    return _container({"running": {"startedAt": "2026-12-02T10:00:05Z"}}, ready=ready, restarts=restarts, last=last)


def waiting(reason: str, message: str, image: str = IMAGE) -> dict[str, Any]:
    return _container({"waiting": {"reason": reason, "message": message}}, image=image)


def image_pull_back_off(image: str = IMAGE) -> dict[str, Any]:
    return waiting("ImagePullBackOff", f'Back-off pulling image "{image}"', image)


def err_image_pull(image: str = IMAGE) -> dict[str, Any]:
    return waiting(
        "ErrImagePull",
        f'rpc error: code = NotFound desc = failed to pull and unpack image "{image}": '
        f'failed to resolve reference "{image}": {image}: not found',
        image,
    )


def terminated(exit_code: int, reason: str, message: str = "") -> dict[str, Any]:
    return {
        "terminated": {
            "containerID": "containerd://9a1e",
            "exitCode": exit_code,
            "reason": reason,
            "startedAt": "2026-12-02T10:00:05Z",
            "finishedAt": "2026-12-02T10:00:07Z",
            **({"message": message} if message else {}),
        }
    }


def crash_loop(exit_code: int = 2, reason: str = "Error", message: str = "", restarts: int = 4) -> dict[str, Any]:
    back_off = f"back-off 1m20s restarting failed container={CONTAINER} pod=support-worker-7d9c5b6f4-x2xlq_voice(0f3c2a)"
    return _container(
        {"waiting": {"reason": "CrashLoopBackOff", "message": back_off}},
        restarts=restarts,
        last=terminated(exit_code, reason, message),
    )
