"""Operator-wide settings the Kopf startup handler makes."""

from __future__ import annotations

import kopf

from voiceagent_operator.handlers import handle_startup


async def _started(settings: kopf.OperatorSettings) -> kopf.OperatorSettings:
    await handle_startup(settings=settings, memo=kopf.Memo())
    return settings


async def test_two_replicas_peer_with_different_priorities_so_one_stays_active() -> None:
    first, second = await _started(kopf.OperatorSettings()), await _started(kopf.OperatorSettings())
    assert first.peering.name == second.peering.name == "voiceagent-operator"
    assert first.peering.priority > 0 and second.peering.priority > 0
    assert first.peering.priority != second.peering.priority


async def test_an_explicit_priority_is_kept() -> None:
    settings = kopf.OperatorSettings()
    settings.peering.priority = 7
    assert (await _started(settings)).peering.priority == 7


async def test_kopf_bookkeeping_stays_out_of_the_status() -> None:
    settings = await _started(kopf.OperatorSettings())
    assert isinstance(settings.persistence.progress_storage, kopf.AnnotationsProgressStorage)
    assert isinstance(settings.persistence.diffbase_storage, kopf.AnnotationsDiffBaseStorage)
