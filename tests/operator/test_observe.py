"""Observing active rooms: scraping ready pods at their IPs, or asking Prometheus; deletion costs."""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from aiohttp import web
from agent_worker.metric_names import ACTIVE_SESSIONS
from loopback import exposition, free_port, metrics_endpoints, pod

from voiceagent_operator.naming import DELETION_COST_ANNOTATION
from voiceagent_operator.scaling.deletion_cost import (
    DO_NOT_DISRUPT_ANNOTATION,
    SAFE_TO_EVICT_ANNOTATION,
    UNKNOWN_ROOMS_COST,
    pod_annotation_patches,
)
from voiceagent_operator.scaling.fleet import Fleet, Target
from voiceagent_operator.scaling.observe import (
    FLEET_QUERY,
    PodRooms,
    ReadyPod,
    active_sessions,
    new_session,
    ready_pods,
    scrape_pods,
)


def test_active_sessions_sums_every_sample_of_the_gauge() -> None:
    assert active_sessions(exposition(2, 3, 0)) == 5
    assert active_sessions("# TYPE other gauge\nother 3\n") == 0


def test_only_the_gauge_s_own_samples_count_with_or_without_labels_and_timestamps() -> None:
    text = f"{ACTIVE_SESSIONS} 2\n{ACTIVE_SESSIONS}{{p=\"a}}b\"}} 3 1700000000\n{ACTIVE_SESSIONS}_created 9\n"
    assert active_sessions(text) == 5


async def test_ready_pods_are_scraped_at_their_own_ip() -> None:
    async with metrics_endpoints({"127.0.1.1": exposition(3), "127.0.1.2": exposition(1, 1)}) as port:
        pods = [pod("a", "127.0.1.1"), pod("b", "127.0.1.2"), pod("starting", "127.0.1.3", ready=False), pod("new", None)]
        async with new_session(timeout=2, concurrency=4) as session:
            rooms = await scrape_pods(session, ready_pods(pods), port)
    assert rooms == PodRooms(rooms={"a": 3, "b": 2}, unknown=())
    assert rooms.total == 5 and rooms.complete


async def test_a_pod_that_fails_to_answer_is_unknown_not_zero() -> None:
    async with metrics_endpoints({"127.0.1.1": exposition(4), "127.0.1.2": 500}) as port:
        pods = ready_pods([pod("a", "127.0.1.1"), pod("b", "127.0.1.2"), pod("c", "127.0.1.9")])
        async with new_session(timeout=2, concurrency=4) as session:
            rooms = await scrape_pods(session, pods, port)
    assert rooms.rooms == {"a": 4}
    assert set(rooms.unknown) == {"b", "c"}
    assert not rooms.complete


@asynccontextmanager
async def prometheus(answer: list[dict[str, Any]], seen: list[str]) -> AsyncIterator[str]:
    async def query(request: web.Request) -> web.Response:
        seen.append(request.query["query"])
        return web.json_response({"status": "success", "data": {"resultType": "vector", "result": answer}})

    app = web.Application()
    app.router.add_get("/api/v1/query", query)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port(["127.0.2.1"])
    await web.TCPSite(runner, "127.0.2.1", port).start()
    try:
        yield f"http://127.0.2.1:{port}"
    finally:
        await runner.cleanup()


def sample(namespace: str, name: str, rooms: int) -> dict[str, Any]:
    return {"metric": {"namespace": namespace, "pod": name}, "value": [0, str(rooms)]}


async def test_one_prometheus_query_per_observation_answers_for_every_voiceagent() -> None:
    seen: list[str] = []
    answer = [sample("voice", "a", 3), sample("voice", "gone", 9), sample("other", "x", 2)]
    async with prometheus(answer, seen) as url:
        fleet = Fleet(interval=1, timeout=2, concurrency=4)
        for uid, namespace, name in (("u1", "voice", "support"), ("u2", "other", "sales")):
            fleet.register(uid)
            fleet.aim(uid, Target(namespace, name, 9100, url))
        pods = {("voice", "support"): [ReadyPod("a", "127.0.1.1"), ReadyPod("b", "127.0.1.2")],
                ("other", "sales"): [ReadyPod("x", "127.0.1.3")]}
        observed = await fleet.observe_all(lambda namespace, name: pods[(namespace, name)])
        await fleet.close()
    assert observed == {"u1": PodRooms(rooms={"a": 3}, unknown=("b",)), "u2": PodRooms(rooms={"x": 2}, unknown=())}
    assert seen == [FLEET_QUERY] == ["sum by (namespace, pod) (agent_worker_active_sessions)"]


async def test_the_observer_wakes_only_the_voiceagents_that_need_a_reconciliation() -> None:
    bodies: dict[str, str | int] = {"127.0.1.1": exposition(1), "127.0.1.2": exposition(0)}
    async with metrics_endpoints(bodies) as port:
        fleet = Fleet(interval=0.05, timeout=2, concurrency=4)
        wakes = {uid: fleet.register(uid) for uid in ("busy", "idle")}
        pods = {"busy": [ReadyPod("b-0", "127.0.1.1")], "idle": [ReadyPod("i-0", "127.0.1.2")]}
        for uid in pods:
            fleet.aim(uid, Target("voice", uid, port))
        asked: list[tuple[str, int]] = []

        def on_observed(uid: str, rooms: PodRooms) -> bool:
            asked.append((uid, rooms.total))
            return rooms.total > 0

        fleet.start(lambda namespace, name: pods[name], on_observed)
        await asyncio.wait_for(wakes["busy"].wait(), 5)
        await fleet.close()
    assert not wakes["idle"].is_set()
    assert ("idle", 0) in asked and ("busy", 1) in asked


async def test_a_pod_that_hangs_costs_one_timeout_and_does_not_hold_up_the_others() -> None:
    hang = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await hang.wait()
        return web.Response(text=exposition(5))

    app = web.Application()
    app.router.add_get("/metrics", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port(["127.0.1.5", "127.0.1.6"])
    await web.TCPSite(runner, "127.0.1.5", port).start()
    try:
        async with metrics_endpoints({"127.0.1.6": exposition(2)}, port):
            started = asyncio.get_running_loop().time()
            async with new_session(timeout=0.5, concurrency=2) as session:
                rooms = await scrape_pods(session, [ReadyPod("stuck", "127.0.1.5"), ReadyPod("ok", "127.0.1.6")], port)
            elapsed = asyncio.get_running_loop().time() - started
    finally:
        hang.set()
        await runner.cleanup()
    assert rooms == PodRooms(rooms={"ok": 2}, unknown=("stuck",))
    assert elapsed < 3


BUSY = {SAFE_TO_EVICT_ANNOTATION: "false", DO_NOT_DISRUPT_ANNOTATION: "true"}


def test_busy_pods_are_marked_and_idle_or_unready_pods_lose_every_mark() -> None:
    stale = {**BUSY, DELETION_COST_ANNOTATION: "3"}
    pods = [pod("busy", "127.0.1.1"), pod("idle", "127.0.1.2", **stale), pod("unready", None, **stale),
            pod("unknown", "127.0.1.3", **BUSY)]
    rooms = PodRooms(rooms={"busy": 2, "idle": 0}, unknown=("unknown",))

    patches = pod_annotation_patches(pods, rooms, scaling_down=False)

    cleared = {"metadata": {"annotations": dict.fromkeys(stale)}}
    assert patches == {"busy": {"metadata": {"annotations": BUSY}}, "idle": cleared, "unready": cleared}
    assert json.dumps(patches)  # a plain merge patch: null removes


def test_before_a_scale_down_the_deletion_cost_is_the_room_count_and_unknown_pods_are_expensive() -> None:
    pods = [pod("a", "127.0.1.1"), pod("b", "127.0.1.2", **BUSY), pod("c", "127.0.1.3")]
    rooms = PodRooms(rooms={"a": 0, "b": 7}, unknown=("c",))

    patches = pod_annotation_patches(pods, rooms, scaling_down=True)

    assert patches == {
        "b": {"metadata": {"annotations": {DELETION_COST_ANNOTATION: "7"}}},
        "c": {"metadata": {"annotations": {DELETION_COST_ANNOTATION: str(UNKNOWN_ROOMS_COST)}}},
    }


def test_pods_whose_marks_are_as_wanted_get_no_patch() -> None:
    pods = [pod("a", "127.0.1.1", **BUSY, **{DELETION_COST_ANNOTATION: "7"}), pod("b", "127.0.1.2")]
    assert pod_annotation_patches(pods, PodRooms(rooms={"a": 7, "b": 0}, unknown=()), scaling_down=True) == {}
