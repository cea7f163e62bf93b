"""`python -m demo` (`make demo`): see demo/__init__.py. Exits 0 only when every turn's filler
was heard before its answer, the turns cost something, and the operator decided a scale-up."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from tests.integration.harness import network, processes
from tests.integration.harness.worker import slower_model

from . import plot, shell
from .bed import start_bed
from .calls import QUESTIONS, ask, start_worker
from .cluster import NAMESPACE, Cluster, Windows, voiceagent
from .monitoring import PodTargets
from .scaling import show_scaling
from .shell import fail, say
from .turns import Turn, problems, table

# The test bed has one small model for both roles; the main LLM is reached through a proxy that
# answers this much later, standing in for a 70B beside an 8B (as in tests/integration/test_worker_room.py).
MAIN_MODEL_DELAY = 2.0


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m demo", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rooms", type=int, default=5, help="concurrent caller rooms for the scaling part (default 5)")
    parser.add_argument("--out", type=Path, default=processes.REPO_ROOT / "demo-output",
                        help="where turns.txt and turns.png go (default demo-output/)")
    parser.add_argument("--questions", type=int, default=len(QUESTIONS), choices=range(1, len(QUESTIONS) + 1),
                        help=f"how many of the caller's questions to ask (default {len(QUESTIONS)})")
    parser.add_argument("--scale-down-seconds", type=int, default=20,
                        help="the demo VoiceAgent's scaleDownStabilizationSeconds (default 20)")
    return parser.parse_args(argv)


def enter_loopback_namespace() -> None:
    """Like the tests: a network namespace whose only addresses are loopback (harness/network.py)."""
    if os.environ.get("TESTBED_HOST_NETWORK") == "1":
        say("TESTBED_HOST_NETWORK=1: staying on the host's network")
    elif not network.only_loopback_addresses():
        network.isolate_to_loopback()
        say("in a network namespace of its own: only 127.0.0.0/8 is reachable")


def write_turns(turns: list[Turn], out: Path) -> None:
    text = table(turns)
    print(text, flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "turns.txt").write_text(text + "\n")
    plot.render(turns, out / "turns.png")
    say(f"wrote {out / 'turns.txt'} and {out / 'turns.png'}")


async def run(stack: contextlib.ExitStack, loop_stack: contextlib.AsyncExitStack, args: argparse.Namespace,
              workdir: Path) -> list[str]:
    """The whole demo; returns the problems that make it fail (none: success)."""
    log_dir = workdir / "logs"
    bed = start_bed(stack, workdir, log_dir)

    cluster = Cluster(bed.plane, workdir, log_dir)
    cluster.install_chart()
    cluster.start_operator()
    stack.callback(cluster.operator.stop)
    windows = Windows(scale_down_seconds=args.scale_down_seconds)
    main_base_url = await loop_stack.enter_async_context(slower_model(bed.model.base_url, MAIN_MODEL_DELAY))
    body = voiceagent(bed.livekit, bed.model, (bed.main_model, bed.fast_model), bed.speech, bed.prometheus.url,
                      windows, main_base_url)
    cluster.apply_voiceagent(body, bed.livekit)
    cluster.wait_ready()

    say(f"starting the real worker (`agent-worker start`) with the environment the operator wrote into "
        f"ConfigMap {NAMESPACE}/{cluster.name}-worker-config")
    worker = start_worker(bed, cluster.worker_config(), log_dir)
    stack.callback(worker.stop)
    targets = PodTargets(bed.plane, bed.prometheus, NAMESPACE,
                         f"app.kubernetes.io/instance={cluster.name},app.kubernetes.io/component=worker",
                         worker.metrics_target)
    targets.start()
    stack.callback(targets.stop)
    say(f"worker registered; Prometheus scrapes it at {worker.metrics_target} as pod {targets.worker_pod}")

    turns = await ask(bed.livekit, worker, QUESTIONS[:args.questions])
    write_turns(turns, args.out)
    found = problems(turns)

    scale = await show_scaling(cluster, bed.livekit, args.rooms, windows)
    if not scale.scaled_up:
        found.append(f"no scale-up decision: the operator saw at most {scale.peak_rooms} active rooms "
                     f"(target {windows.target_rooms} per worker) with {args.rooms} callers")
    elif not scale.scaled_down:
        say("note: the scale-down was not seen in time (not required for success)")
    return found


async def run_in(stack: contextlib.ExitStack, args: argparse.Namespace, workdir: Path) -> list[str]:
    """`run` with an async exit stack for what lives in the event loop (the main model's proxy)."""
    async with contextlib.AsyncExitStack() as loop_stack:
        return await run(stack, loop_stack, args, workdir)


def _interrupt(signum: int, frame: object) -> None:
    """Ctrl-C and SIGTERM stop the demo at once, wherever it is: asyncio's own Ctrl-C handling
    only cancels the main task, which a library awaiting something may not pass on."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    enter_loopback_namespace()
    for number in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(number) is not signal.SIG_IGN:
            signal.signal(number, _interrupt)
    workdir = Path(tempfile.mkdtemp(prefix="agent-worker-demo-"))
    with contextlib.ExitStack() as stack:
        stack.callback(lambda: say("stopping everything the demo started"))
        try:
            found = asyncio.run(run_in(stack, args, workdir))
        except KeyboardInterrupt:
            fail("interrupted: stopping everything it started")
            return 130
        except Exception as error:
            for name, tail in processes.running_logs(15).items():
                print(f"--- {name} (last lines) ---\n{tail}", file=sys.stderr)
            fail(f"{type(error).__name__}: {error}\n(logs of every program in {workdir / 'logs'})")
            return 1
    elapsed = time.monotonic() - shell.STARTED
    if found:
        fail("FAILED:\n  " + "\n  ".join(found) + f"\n(logs in {workdir / 'logs'})")
        return 1
    print(f"\ndemo: OK in {elapsed:.0f}s: every filler before its answer, cost > 0, scale-up decided. "
          f"Logs in {workdir / 'logs'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
