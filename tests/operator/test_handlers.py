"""Operator-wide settings the Kopf startup handler makes, and what it remembers per VoiceAgent."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import kopf
import pytest
import yaml

from voiceagent_operator.handlers import QUIET_INDEXERS, RETRIED_REQUEST_IS_A_WARNING, handle_event, handle_startup
from voiceagent_operator.reconcile import AgentMemory
from voiceagent_operator.spec import parse_spec

ROOT = Path(__file__).resolve().parents[2]


async def _started(settings: kopf.OperatorSettings) -> kopf.OperatorSettings:
    await handle_startup(settings=settings, memo=kopf.Memo())
    return settings


async def test_a_new_generation_wakes_the_voiceagents_daemon_and_a_status_change_does_not() -> None:
    memo = kopf.Memo()
    await handle_startup(settings=kopf.OperatorSettings(), memo=memo)
    wake = memo.fleet.register("uid-1")

    def body(generation: int) -> kopf.Body:
        return kopf.Body({"metadata": {"name": "a", "namespace": "ns", "uid": "uid-1", "generation": generation}})

    await handle_event(type="ADDED", uid="uid-1", body=body(1), memo=memo)
    assert not wake.is_set()  # first sight: the daemon reconciles at start anyway
    await handle_event(type="MODIFIED", uid="uid-1", body=body(1), memo=memo)  # e.g. our status patch
    assert not wake.is_set()
    await handle_event(type="MODIFIED", uid="uid-1", body=body(2), memo=memo)  # a new spec
    assert wake.is_set()
    await handle_event(type="DELETED", uid="uid-1", body=body(2), memo=memo)
    assert "uid-1" not in memo.generations


async def test_two_replicas_peer_with_different_priorities_so_one_stays_active() -> None:
    def replica_priority() -> int:  # each replica is its own process
        code = "from voiceagent_operator.standby import PRIORITY; print(PRIORITY)"
        return int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)

    first, second = replica_priority(), replica_priority()
    assert first > 0 and second > 0
    assert first != second


async def test_a_replica_keeps_its_priority_when_it_starts_kopf_again() -> None:
    first_run, second_run = await _started(kopf.OperatorSettings()), await _started(kopf.OperatorSettings())
    assert first_run.peering.priority == second_run.peering.priority > 0


async def test_the_peering_name_from_the_command_line_is_kept_and_a_dead_leader_expires_within_15_seconds() -> None:
    settings = kopf.OperatorSettings()
    settings.peering.name, settings.peering.mandatory = "release-b-operator", True  # as `kopf run --peering=...` sets them
    started = await _started(settings)
    assert (started.peering.name, started.peering.mandatory) == ("release-b-operator", True)
    assert started.peering.lifetime <= 10  # renewed every 1-5 s; a standby resumes when it expires


async def test_an_explicit_priority_is_kept() -> None:
    settings = kopf.OperatorSettings()
    settings.peering.priority = 7
    assert (await _started(settings)).peering.priority == 7


async def test_kopf_bookkeeping_stays_out_of_the_status() -> None:
    settings = await _started(kopf.OperatorSettings())
    assert isinstance(settings.persistence.progress_storage, kopf.AnnotationsProgressStorage)


def test_a_request_kopf_will_retry_is_logged_as_a_warning_and_its_final_failure_as_an_error():
    def record(name: str, message: str) -> logging.LogRecord:
        out = logging.LogRecord(name, logging.ERROR, __file__, 1, message, None, None)
        assert RETRIED_REQUEST_IS_A_WARNING.filter(out)
        return out

    retried = record("kopf._cogs.clients.watching", "Request attempt #1/9 failed; will retry: GET /x -> 429")
    final = record("kopf._cogs.clients.watching", "Request attempt #9/9 failed; escalating: GET /x -> 429")
    ours = record("voiceagent_operator.reconcile", "Request attempt #1/9 failed; will retry: ours")
    assert (retried.levelno, retried.levelname) == (logging.WARNING, "WARNING")
    assert (final.levelno, final.levelname) == (logging.ERROR, "ERROR")
    assert ours.levelno == logging.ERROR


def test_an_index_update_is_not_logged_but_an_indexer_failure_and_other_handlers_are():
    def kept(level: int, message: str) -> bool:
        return QUIET_INDEXERS.filter(logging.LogRecord("kopf.objects", level, __file__, 1, message, None, None))

    assert not kept(logging.INFO, "Indexer 'worker_pods' succeeded.")
    assert kept(logging.ERROR, "Indexer 'worker_pods' failed with an exception. Will ignore.")
    assert kept(logging.INFO, "Handler 'handle_event' succeeded.")


@pytest.mark.parametrize("example", sorted((ROOT / "manifests" / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_an_agents_memory_keeps_its_last_good_spec_and_written_status_as_they_were(example):
    body = yaml.safe_load(example.read_text())
    spec = parse_spec(body["spec"])
    status = {"replicas": 2, "conditions": [{"type": "Ready", "status": "True", "message": "ok"}], "scalingHistory": "{}"}
    memory = AgentMemory()
    memory.last_good_spec, memory.written_status = spec, status
    assert (memory.last_good_spec, memory.written_status) == (spec, status)
    assert isinstance(memory.last_good_spec_json, bytes) and isinstance(memory.written_status_json, bytes)
