"""Observing active rooms: scraping ready pods at their IPs, or asking Prometheus; deletion costs."""

from __future__ import annotations

import json

from aiohttp import web
from loopback import exposition, free_port, metrics_endpoints, pod
from va_examples import groq_spec

from voiceagent_operator.naming import DELETION_COST_ANNOTATION
from voiceagent_operator.scaling.deletion_cost import (
    DO_NOT_DISRUPT_ANNOTATION,
    SAFE_TO_EVICT_ANNOTATION,
    UNKNOWN_ROOMS_COST,
    pod_annotation_patches,
)
from voiceagent_operator.scaling.observe import PodRooms, active_sessions, observe, scrape_pods
from voiceagent_operator.spec import parse_spec


def test_active_sessions_sums_every_sample_of_the_gauge() -> None:
    assert active_sessions(exposition(2, 3, 0)) == 5
    assert active_sessions("# TYPE other gauge\nother 3\n") == 0


async def test_ready_pods_are_scraped_at_their_own_ip() -> None:
    async with metrics_endpoints({"127.0.1.1": exposition(3), "127.0.1.2": exposition(1, 1)}) as port:
        pods = [pod("a", "127.0.1.1"), pod("b", "127.0.1.2"), pod("starting", "127.0.1.3", ready=False), pod("new", None)]
        rooms = await scrape_pods(pods, port, timeout=2)
    assert rooms == PodRooms(rooms={"a": 3, "b": 2}, unknown=())
    assert rooms.total == 5 and rooms.complete


async def test_a_pod_that_fails_to_answer_is_unknown_not_zero() -> None:
    async with metrics_endpoints({"127.0.1.1": exposition(4), "127.0.1.2": 500}) as port:
        rooms = await scrape_pods([pod("a", "127.0.1.1"), pod("b", "127.0.1.2"), pod("c", "127.0.1.9")], port, timeout=2)
    assert rooms.rooms == {"a": 4}
    assert set(rooms.unknown) == {"b", "c"}
    assert not rooms.complete


async def test_prometheus_is_queried_by_pod_when_the_spec_says_so() -> None:
    seen = []

    async def query(request: web.Request) -> web.Response:
        seen.append(request.query["query"])
        result = [{"metric": {"pod": "a"}, "value": [0, "3"]}, {"metric": {"pod": "gone"}, "value": [0, "9"]}]
        return web.json_response({"status": "success", "data": {"resultType": "vector", "result": result}})

    app = web.Application()
    app.router.add_get("/api/v1/query", query)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port(["127.0.2.1"])
    await web.TCPSite(runner, "127.0.2.1", port).start()
    try:
        spec = parse_spec(groq_spec(scaling={"metricsSource": "prometheus", "prometheusUrl": f"http://127.0.2.1:{port}"}))
        rooms = await observe([pod("a", "127.0.1.1"), pod("b", "127.0.1.2")], spec.scaling, spec.metrics_port, "voice", timeout=2)
    finally:
        await runner.cleanup()
    assert rooms == PodRooms(rooms={"a": 3}, unknown=("b",))
    assert seen == ['sum by (pod) (agent_worker_active_sessions{namespace="voice"})']


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
