"""Kopf handlers: each only translates a Kopf event into a call to `reconcile`.

Each VoiceAgent has a daemon that reconciles it at once, then whenever the fleet observer wakes it (its
rooms changed, or the policy would scale) and at least every resync period; a spec change reconciles at
once too. Children and worker pods come from Kopf indexes (see `cache`), filled by watches filtered
server-side to our labels, so a reconciliation that finds nothing to do sends no request at all.

Run with `voiceagent-operator run` (or `kopf run -m voiceagent_operator.handlers`).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from typing import Any

import kopf
from prometheus_client import start_http_server

from . import metrics
from .builders.ollama_pull import PULL
from .cache import (
    CHILD_KINDS,
    CHILDREN_SELECTOR,
    COMPONENT,
    WORKER_PODS_SELECTOR,
    Cache,
    index_child,
    index_name,
    index_worker_pod,
)
from .kube import Kube, login
from .naming import Owner
from .options import OperatorOptions
from .reconcile import AgentMemory, Context, needs_reconcile, reconcile
from .scaling.fleet import Fleet
from .scaling.observe import PodRooms
from .spec import GROUP, PLURAL, VERSION
from .standby import PRIORITY

OPTIONS = OperatorOptions()
log = logging.getLogger(__name__)
RESOURCE = (GROUP, VERSION, PLURAL)


@kopf.on.login()
async def handle_login(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> kopf.ConnectionInfo:
    """Kopf and the operator's own client authenticate with the same credentials."""
    info, token_file = login(settings)
    previous = getattr(memo, "kube", None)
    memo.kube = Kube(info, token_file)
    memo.cache.kube = memo.kube  # the startup handler made the cache; Kopf logs in after it
    if previous is not None:  # a re-login after the credentials expired
        await previous.close()
    return info


@kopf.on.startup()
async def handle_startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Kopf's bookkeeping goes to annotations, so the status holds only what the CRD declares.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    # Kopf's timers need a finalizer; on deletion it waits for the running reconcile to return, and
    # this is how soon it looks again (its default, 60 s, would hold a deletion for a minute).
    settings.persistence.finalizer = f"{GROUP}/operator"
    settings.background.cancellation_polling = 1
    # Serving only named namespaces (the chart's namespaced mode), no namespace listing, no CRD watch.
    settings.scanning.disabled = not OPTIONS.scan_cluster
    # The peering name and its being mandatory come from the command line (`--peering`, which
    # `voiceagent-operator run` always passes unless `--standalone`): never overwritten here.
    # A replica's record lives PEERING_LIFETIME_SECONDS and is renewed every 1-5 s, so a standby takes
    # over within about that long after the active replica dies.
    settings.peering.lifetime = PEERING_LIFETIME_SECONDS
    if not settings.peering.priority:
        # The highest live replica is active; if it dies, another resumes once its peering record
        # expires (and one that served before starts Kopf afresh when paused: see `standby`).
        settings.peering.priority = PRIORITY
    # Kopf's own INFO lines ("Handler ... succeeded") are not posted as Events: ours say what changed.
    settings.posting.level = logging.WARNING
    # Kopf posts each object's Events from its own worker over an unlimited connection pool: a burst
    # of new VoiceAgents opened a TLS connection per object (130 at once for 100 creates), and the
    # memory they took was never given back. A few posters at a time suffice.
    settings.posting.worker_limit = EVENT_POSTERS
    # Kopf keeps a worker per watched object while its events come, and this long after (5 s by
    # default): a burst of new VoiceAgents and their children held thousands at once.
    settings.queueing.idle_timeout = 1.0
    # Watch only our children and worker pods (server-side label selectors), for the indexes below.
    for group, version, plural, _ in CHILD_KINDS:
        settings.watching.label_selectors[_selector(group, version, plural)] = CHILDREN_SELECTOR
    settings.watching.label_selectors[_selector("", "v1", "pods")] = WORKER_PODS_SELECTOR
    memo.agents = {}
    memo.generations = {}  # uid -> the VoiceAgent's metadata.generation last seen (handle_event)
    memo.reconcile_slots = asyncio.Semaphore(CONCURRENT_RECONCILES)
    memo.cache = Cache()
    memo.fleet = Fleet(OPTIONS.observe_seconds, OPTIONS.scrape_timeout_seconds, OPTIONS.scrape_concurrency)
    for handler in logging.getLogger().handlers:
        handler.addFilter(RETRIED_REQUEST_IS_A_WARNING)
        handler.addFilter(QUIET_INDEXERS)
    serve_metrics_once(OPTIONS.metrics_port)


class RetriedRequestIsAWarning(logging.Filter):
    """Kopf logs each failed attempt of an API request it will retry as an ERROR, though the retry
    usually succeeds: a 429 while a new CRD's watch cache initializes, a 403 while RBAC settles.
    Those become WARNINGs; the last attempt's failure ("escalating") stays an ERROR."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and record.name.startswith("kopf."):
            message = record.getMessage()
            if message.startswith("Request attempt") and "; will retry:" in message:
                record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


RETRIED_REQUEST_IS_A_WARNING = RetriedRequestIsAWarning()


class QuietIndexers(logging.Filter):
    """Kopf logs every index update ("Indexer 'worker_pods' succeeded.") at INFO: one line per event of
    every watched child and pod. Those lines are dropped; an indexer's failure is still logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO and record.name == "kopf.objects":
            message = record.getMessage()
            return not (message.startswith("Indexer '") and message.endswith("' succeeded."))
        return True


QUIET_INDEXERS = QuietIndexers()


PEERING_LIFETIME_SECONDS = 10
# Reconciliations in flight at once, for the whole operator (first come, first served): a burst of new
# VoiceAgents is worked through in order, with bounded memory and apiserver load, not all at once.
CONCURRENT_RECONCILES = 32
EVENT_POSTERS = 4


@kopf.on.cleanup()
async def handle_cleanup(memo: kopf.Memo, **_: Any) -> None:
    if getattr(memo, "fleet", None) is not None:
        await memo.fleet.close()
    if getattr(memo, "kube", None) is not None:
        await memo.kube.close()


def _selector(group: str, version: str, plural: str) -> tuple[str, ...]:
    """Kopf's resource selector: ("v1", "pods") for the core group, ("apps", "v1", "deployments") otherwise."""
    return (group, version, plural) if group else (version, plural)


# The indexers are coroutines: Kopf would run plain functions in a thread pool, and every thread that
# allocates brings its own malloc arena (tens of MiB of resident memory that is never given back).
async def _index_child(body: kopf.Body, memo: kopf.Memo, **_: Any) -> Any:
    if (body.get("metadata", {}).get("labels") or {}).get(COMPONENT) == PULL:
        _wake_owners(memo, body)  # a pull Job's progress is the OllamaReady condition: report it now
    return index_child(body)


def _wake_owners(memo: kopf.Memo, body: kopf.Body) -> None:
    fleet = getattr(memo, "fleet", None)
    for ref in body.get("metadata", {}).get("ownerReferences") or []:
        wake = fleet.wakes.get(ref.get("uid")) if fleet is not None else None
        if wake is not None:
            wake.set()


for _group, _version, _plural, _ in CHILD_KINDS:
    kopf.index(*_selector(_group, _version, _plural), id=index_name(_plural))(_index_child)


@kopf.index("v1", "pods")
async def worker_pods(body: kopf.Body, **_: Any) -> Any:
    return index_worker_pod(body)


@kopf.daemon(*RESOURCE)
async def handle_agent(body: kopf.Body, uid: str, memo: kopf.Memo, stopped: kopf.DaemonStopped, **indexes: Any) -> None:
    """While this replica serves the VoiceAgent: reconcile at once, then when woken or every resync period.
    Kopf stops it when the VoiceAgent goes or this replica stands by; then its memory and gauges go too."""
    memo.cache.attach(indexes)
    memo.fleet.start(memo.cache.ready_worker_pods, lambda agent, rooms: _observed(memo, agent, rooms))
    wake = memo.fleet.register(uid)
    stop = asyncio.ensure_future(_stopped(stopped))
    try:
        due = time.monotonic()
        while not stopped:
            wake.clear()
            if time.monotonic() >= due:  # the resync: at most one period after the last one began
                due = time.monotonic() + OPTIONS.resync_seconds
            try:
                await run_reconcile(dict(body), memo)
            except Exception:  # counted and logged by run_reconcile's metrics; tried again when due or woken
                log.exception("%s/%s: reconciliation failed", body["metadata"]["namespace"], body["metadata"]["name"])
            memory = memo.agents[uid][0] if uid in memo.agents else None
            if memory is not None and memory.observed is not None:
                memo.fleet.aim(uid, memory.observed[0])
            woken = asyncio.ensure_future(wake.wait())
            await asyncio.wait([stop, woken], timeout=max(0.0, due - time.monotonic()), return_when=asyncio.FIRST_COMPLETED)
            woken.cancel()
    finally:
        stop.cancel()
        memo.fleet.unregister(uid)
        _forget(memo, uid, body)


async def _stopped(stopped: kopf.DaemonStopped) -> None:
    await stopped.wait()


@kopf.on.event(*RESOURCE)
async def handle_event(type: str, uid: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A new spec (a new generation) wakes the VoiceAgent's daemon at once. An event handler, not
    `kopf.on.update`: Kopf would keep a copy of every VoiceAgent in an annotation to diff against (one
    more write per new VoiceAgent, and a deep copy on every event). On deletion the children go with
    their ownerReferences; the operator forgets the agent."""
    if type == "DELETED":
        _forget(memo, uid, body)
        return
    generation = body.get("metadata", {}).get("generation")
    if memo.generations.get(uid, generation) != generation and uid in memo.fleet.wakes:
        memo.fleet.wakes[uid].set()
    memo.generations[uid] = generation


def _forget(memo: kopf.Memo, uid: str, body: kopf.Body) -> None:
    memo.agents.pop(uid, None)
    memo.generations.pop(uid, None)
    owner = Owner.of(dict(body))
    memo.cache.forget(owner)
    metrics.forget(owner.namespace, owner.name)


def _observed(memo: kopf.Memo, uid: str, rooms: PodRooms) -> bool:
    """The fleet observer's question for one VoiceAgent: reconcile it now?"""
    entry = memo.agents.get(uid)
    if entry is None or entry[0].observed is None:
        return False
    memory = entry[0]
    return needs_reconcile(memory, memory.observed[0], rooms, time.time(), OPTIONS.observe_seconds)


_METRICS_SERVED: set[int] = set()


def serve_metrics_once(port: int) -> None:
    """The operator's /metrics on its own port (a daemon thread), started once per process."""
    if port and port not in _METRICS_SERVED:
        start_http_server(port)
        _METRICS_SERVED.add(port)


async def run_reconcile(body: dict[str, Any], memo: kopf.Memo) -> None:
    meta = body["metadata"]
    if meta["uid"] not in memo.agents:
        memo.agents[meta["uid"]] = (AgentMemory(), asyncio.Lock())
    memory, lock = memo.agents[meta["uid"]]

    def emit(kind: str, reason: str, message: str) -> None:
        kopf.event(body, type=kind, reason=reason, message=message)

    async with lock, memo.reconcile_slots:
        started = time.monotonic()
        ctx = Context(
            cache=memo.cache,
            body=body,
            memory=memory,
            now=datetime.datetime.now(datetime.timezone.utc),
            emit=emit,
            observe=memo.fleet.observe_one,
            interval=OPTIONS.observe_seconds,
        )
        try:
            outcome = await reconcile(ctx)
        except Exception:
            metrics.RECONCILES.labels("error").inc()
            metrics.RECONCILE_ERRORS.labels("Exception").inc()
            raise
        finally:
            metrics.RECONCILE_SECONDS.observe(time.monotonic() - started)
        metrics.RECONCILES.labels(outcome).inc()
