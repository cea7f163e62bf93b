"""Observing active rooms: scraping ready pods at their IPs, or asking Prometheus; deletion costs."""

from __future__ import annotations

import json

from aiohttp import web
from loopback import exposition, free_port, metrics_endpoints, pod
from va_examples import groq_spec

from voiceagent_operator.naming import DELETION_COST_ANNOTATION
from voiceagent_operator.scaling.deletion_cost import UNKNOWN_ROOMS_COST, annotation_patches, deletion_costs
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
        rooms = await observe([pod("a", "127.0.1.1"), pod("b", "127.0.1.2")], spec, "voice", timeout=2)
    finally:
        await runner.cleanup()
    assert rooms == PodRooms(rooms={"a": 3}, unknown=("b",))
    assert seen == ['sum by (pod) (agent_worker_active_sessions{namespace="voice"})']


def test_deletion_cost_is_the_room_count_and_unknown_pods_are_expensive() -> None:
    costs = deletion_costs(PodRooms(rooms={"a": 0, "b": 7}, unknown=("c",)))
    assert costs == {"a": "0", "b": "7", "c": str(UNKNOWN_ROOMS_COST)}


def test_only_pods_whose_cost_changed_are_patched() -> None:
    pods = [pod("a", "127.0.1.1", **{DELETION_COST_ANNOTATION: "0"}), pod("b", "127.0.1.2"), pod("d", None)]
    patches = annotation_patches(pods, {"a": "0", "b": "7"})
    assert patches == {"b": {"metadata": {"annotations": {DELETION_COST_ANNOTATION: "7"}}}}
    assert json.dumps(patches)  # a plain merge patch
