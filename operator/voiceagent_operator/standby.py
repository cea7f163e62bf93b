"""A replica that has served and is told to stand by starts Kopf again, so it takes over from a fresh listing.

Kopf fills its indexes (the operator's children and worker pods, see `cache`) from one listing when it
starts, and from then on only from watch events. A paused replica watches nothing; when it resumes,
Kopf lists again but runs handlers without waiting for that listing, and never drops what was deleted
while it stood by. Acting on that, a replica that took over after a failover saw the fleet as it was
before its pause: a Deployment the other replica had scaled to 3 looked absent, and it was set back to
its minimum; a worker pod deleted meanwhile stayed "ready" for good.

So when Kopf pauses a replica that has served (it resumed at least once in this run), the replica ends
its Kopf run gracefully (Kopf's own SIGTERM handling: daemons stopped, peering record removed) and
`voiceagent-operator run` starts a new one at once. The new run stands by with nothing cached, and
when it takes over, Kopf lists everything before its first handler, as at any start. Its priority is
the process's, so the restart does not take the lead back from the replica it paused for.
"""

from __future__ import annotations

import logging
import random
import signal

# Kopf's peering engine logs each pause and resume at INFO (kopf/_core/engines/peering.py).
PEERING_LOGGER = "kopf._core.engines.peering"
# Kopf pauses every peer when two share a priority, and the chart's replicas cannot be told apart by
# configuration: each process draws its own, once (a restarted Kopf run keeps it).
PRIORITY = random.randint(1, 2**31 - 1)

log = logging.getLogger(__name__)


class Standby(logging.Filter):
    """Watches Kopf's peering messages; asks for a new Kopf run when a replica that served is paused."""

    def __init__(self) -> None:
        super().__init__()
        self.served = False
        self.restart = False

    def new_run(self) -> None:
        self.served = self.restart = False

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith("Resuming operations"):
            self.served = True
        elif message.startswith("Pausing") and self.served and not self.restart:
            self.restart = True
            log.info("Standing by after serving: this Kopf run ends and a new one starts, with nothing cached")
            signal.raise_signal(signal.SIGTERM)  # Kopf's handler stops this run; `run` starts the next
        # Seen at every level (below), printed only at the level Kopf's command line set.
        return record.levelno >= logging.getLogger().getEffectiveLevel()

    def install(self) -> Standby:
        """Watch Kopf's peering log (`voiceagent-operator run` does, once per process)."""
        peering = logging.getLogger(PEERING_LOGGER)
        peering.setLevel(logging.DEBUG)  # so that a pause is noticed under `--quiet` too
        peering.addFilter(self)
        return self
