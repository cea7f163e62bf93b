"""Kopf handlers: each only translates a Kopf event into a call to `reconcile`.

Run with `voiceagent-operator run` (or `kopf run -m voiceagent_operator.handlers`).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import random
import time
from dataclasses import dataclass
from typing import Any

import kopf
from prometheus_client import start_http_server

from . import metrics
from .kube import Kube, connection_info, load_configuration
from .options import OperatorOptions
from .reconcile import AgentMemory, Context, reconcile
from .spec import GROUP, PLURAL, VERSION

OPTIONS = OperatorOptions()
RESOURCE = (GROUP, VERSION, PLURAL)


@kopf.on.login()
async def handle_login(memo: kopf.Memo, **_: Any) -> kopf.ConnectionInfo:
    """Kopf and the operator's own client authenticate from the same configuration."""
    configuration = await load_configuration()
    previous = getattr(memo, "kube", None)
    memo.kube = Kube.from_configuration(configuration)
    if previous is not None:  # a re-login after the credentials expired
        await previous.close()
    return await connection_info(configuration)


@kopf.on.startup()
async def handle_startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Kopf's bookkeeping goes to annotations, so the status holds only what the CRD declares.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
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
        # Kopf pauses every peer when two share a priority, and the chart's replicas cannot be told
        # apart by configuration: each draws its own. The highest live one is active; if it dies,
        # another resumes once its peering record expires.
        settings.peering.priority = random.randint(1, 2**31 - 1)
    memo.agents = {}
    memo.forgetter = asyncio.create_task(forget_unreconciled(memo))
    for handler in logging.getLogger().handlers:
        handler.addFilter(RETRIED_REQUEST_IS_A_WARNING)
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


PEERING_LIFETIME_SECONDS = 10
# A VoiceAgent not reconciled for this long is not this replica's (it stands by, or the agent is gone).
STALE_AFTER_SECONDS = max(3 * OPTIONS.resync_seconds, 10.0)


async def forget_unreconciled(memo: kopf.Memo) -> None:
    """A paused (standby) replica reconciles nothing: drop its per-VoiceAgent gauges and memory, so that
    only the active replica exports them and a later resume starts from the status, not from stale memory."""
    while True:
        await asyncio.sleep(min(OPTIONS.resync_seconds, 5.0))
        now = time.monotonic()
        for uid, (memory, lock, seen) in list(memo.agents.items()):
            if now - seen.at > STALE_AFTER_SECONDS and not lock.locked():
                memo.agents.pop(uid, None)
                metrics.forget(seen.namespace, seen.name)


@kopf.on.cleanup()
async def handle_cleanup(memo: kopf.Memo, **_: Any) -> None:
    if getattr(memo, "forgetter", None) is not None:
        memo.forgetter.cancel()
    if getattr(memo, "kube", None) is not None:
        await memo.kube.close()


@kopf.on.create(*RESOURCE)
@kopf.on.update(*RESOURCE)
@kopf.on.resume(*RESOURCE)
@kopf.timer(*RESOURCE, interval=OPTIONS.resync_seconds, sharp=False)
async def handle_reconcile(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    await run_reconcile(dict(body), memo)


@kopf.on.event(*RESOURCE)
async def handle_event(type: str, namespace: str, name: str, uid: str, memo: kopf.Memo, **_: Any) -> None:
    """On deletion the children go with their ownerReferences (no finalizer); the operator forgets the agent."""
    if type == "DELETED":
        memo.agents.pop(uid, None)
        metrics.forget(namespace, name)


_METRICS_SERVED: set[int] = set()


def serve_metrics_once(port: int) -> None:
    """The operator's /metrics on its own port (a daemon thread), started once per process."""
    if port and port not in _METRICS_SERVED:
        start_http_server(port)
        _METRICS_SERVED.add(port)


@dataclass
class LastSeen:
    namespace: str
    name: str
    at: float


async def run_reconcile(body: dict[str, Any], memo: kopf.Memo) -> None:
    meta = body["metadata"]
    if meta["uid"] not in memo.agents:
        memo.agents[meta["uid"]] = (AgentMemory(), asyncio.Lock(), LastSeen(meta["namespace"], meta["name"], 0.0))
    memory, lock, seen = memo.agents[meta["uid"]]
    seen.at = time.monotonic()

    def emit(kind: str, reason: str, message: str) -> None:
        kopf.event(body, type=kind, reason=reason, message=message)

    async with lock:
        started = time.monotonic()
        ctx = Context(
            kube=memo.kube,
            body=body,
            memory=memory,
            now=datetime.datetime.now(datetime.timezone.utc),
            scrape_timeout=OPTIONS.scrape_timeout_seconds,
            emit=emit,
            interval=OPTIONS.resync_seconds,
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
