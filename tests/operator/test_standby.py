"""When a replica ends its Kopf run to stand by with nothing cached (voiceagent_operator/standby.py):
only when Kopf pauses it after it has served, once per run, through Kopf's own SIGTERM handling."""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator

import pytest

from voiceagent_operator.standby import PEERING_LOGGER, Standby

RESUMING = "Resuming operations after the pause. Conflicting operators with the same priority are gone."
PAUSING = "Pausing operations in favour of [<Peer root@vm/20261202/abc: priority=1001, lifetime=10>]."


@pytest.fixture
def terms() -> Iterator[list[int]]:
    """The SIGTERMs this process receives while the test runs (Kopf's handler stands in)."""
    received: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    yield received
    signal.signal(signal.SIGTERM, previous)


@pytest.fixture
def standby() -> Iterator[Standby]:
    watcher = Standby().install()
    yield watcher
    logging.getLogger(PEERING_LOGGER).removeFilter(watcher)


def kopf_says(message: str) -> None:
    logging.getLogger(PEERING_LOGGER).info(message)


def test_a_replica_paused_after_serving_ends_its_kopf_run_once(standby: Standby, terms: list[int]) -> None:
    kopf_says(RESUMING)
    kopf_says(PAUSING)
    kopf_says(PAUSING)

    assert standby.restart is True
    assert terms == [signal.SIGTERM]


def test_a_replica_that_never_served_stands_by_in_the_same_run(standby: Standby, terms: list[int]) -> None:
    kopf_says(PAUSING)

    assert standby.restart is False
    assert terms == []


def test_a_new_run_has_not_served_yet(standby: Standby, terms: list[int]) -> None:
    kopf_says(RESUMING)
    kopf_says(PAUSING)
    standby.new_run()
    kopf_says(PAUSING)

    assert (standby.restart, standby.served) == (False, False)
    assert terms == [signal.SIGTERM]
