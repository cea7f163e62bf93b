"""`python -m demo` (`make demo`): see demo/__init__.py. Exits 0 only when every turn's filler
was heard before its answer, the turns cost something, and the operator decided a scale-up."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
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
from .calls import QUESTIONS, ask
from .cluster import Cluster, Windows, voiceagent
from .scaling import show_scaling
from .shell import fail, say
from .turns import Turn, problems, table

# The test bed has one small model for both roles; the main LLM is reached through a proxy that
# answers this much later, standing in for a 70B beside an 8B (as in tests/integration/test_worker_room.py).
MAIN_MODEL_DELAY = 2.0


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m demo", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rooms", type=int, default=2, choices=range(2, 5),
                        help="concurrent caller rooms for the scaling part (default 2: one per worker pod, two pods)")
    parser.add_argument("--out", type=Path, default=processes.REPO_ROOT / "demo-output",
                        help="where turns.txt and turns.png go (default demo-output/)")
    parser.add_argument("--questions", type=int, default=len(QUESTIONS), choices=range(1, len(QUESTIONS) + 1),
                        help=f"how many of the caller's questions to ask (default {len(QUESTIONS)})")
    parser.add_argument("--scale-down-seconds", type=int, default=20,
                        help="the demo VoiceAgent's scaleDownStabilizationSeconds (default 20)")
    return parser.parse_args(argv)


def enter_loopback_namespace() -> None:
    """Like the tests: a network namespace whose only addresses are loopback and the real node's
    pod network (harness/network.py)."""
    if os.environ.get("TESTBED_HOST_NETWORK") == "1":
        raise SystemExit("demo: the real node's pod network exists only in the demo's own network namespace; "
                         "unset TESTBED_HOST_NETWORK (and run as root)")
    if not network.in_closed_network():
        network.isolate_to_loopback()
        say(f"in a network namespace of its own: only 127.0.0.0/8 and the pod network {network.POD_SUBNET} "
            f"(node {network.NODE_IP}) are reachable")


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
    stack.callback(cluster.close)
    cluster.create_namespace(bed.livekit)
    cluster.install_chart()
    say("the operator runs as a pod from its image on the node, as the chart's ServiceAccount")
    windows = Windows(scale_down_seconds=args.scale_down_seconds)
    main_base_url = await loop_stack.enter_async_context(
        slower_model(bed.model.base_url, MAIN_MODEL_DELAY, host=network.NODE_IP))
    body = voiceagent(bed.livekit, bed.model, (bed.main_model, bed.fast_model), bed.speech, bed.prometheus.url,
                      windows, main_base_url)
    cluster.apply_voiceagent(body)
    pod = cluster.wait_ready()
    processes.wait_until(lambda: bed.prometheus.value("count(up == 1)") >= 2,
                         "Prometheus to scrape the worker pod and the operator pod", bed.prometheus.process, 60)
    say(f"worker pod {pod.name} ({pod.ip}) registered with livekit-server; Prometheus discovered and scrapes it "
        f"and the operator pod, evaluating {len(bed.prometheus.rules())} rules of the chart")

    turns = await ask(bed.livekit, [pod.metrics_url], QUESTIONS[:args.questions])
    write_turns(turns, args.out)
    found = problems(turns)

    scale = await show_scaling(cluster, bed.prometheus, bed.livekit, args.rooms, windows)
    if not scale.scaled_up:
        found.append(f"no scale-up decision: the operator saw at most {scale.peak_rooms} active rooms "
                     f"(target {windows.target_rooms} per worker pod) with {args.rooms} callers")
    elif scale.peak_pods < scale.peak_desired:
        say(f"note: {scale.peak_pods} of {scale.peak_desired} worker pods got Ready in time (not required for success)")
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
            # The interrupt may have landed in one of the caller's tasks, which asyncio would then
            # report as "never retrieved" while everything stops.
            logging.getLogger("asyncio").setLevel(logging.CRITICAL)
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
