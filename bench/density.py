"""Calls per core: how many concurrent calls one worker process holds before callers notice.
`make bench-density` (needs `make testbed`; not part of `make test`). Writes bench/results/density.json.

One `agent-worker start` as in production (Silero VAD, the local turn detector, its job process
per call) registers with the test bed's livekit-server. Its providers are stood in at HTTP level
on loopback (tests/integration/harness/scripted_providers.py): they answer after scripted
latencies and cost no CPU in the worker. N callers (tests/integration/harness/caller.py) join N
rooms and ask a spoken question whenever the agent has finished answering. N steps up
(`--sizes`); per N and per variant the run records the end of speech -> first agent audio p50/p95
(caller's clock), turns lost or timed out, the worker tree's CPU seconds per call-minute
(/proc utime+stime, children included), its memory (PSS and unique memory of the job processes),
and how busy each core was.

Cores: the worker and all its processes run on `--worker-core` (sched affinity, inherited by the
job processes); this process, livekit-server, the callers and the stand-ins on the other cores.
The budget: first-audio p95 no more than `--budget-ms` above its N = 1 value, and no lost turn.
Calls per core = the largest N within the budget / the cores the worker may use.

Variants, alternated at each N so all see the same machine: `ours` (the worker as shipped),
`plain` (bench/density_plain.py: a plain livekit Agent on the same providers, VAD, turn detector
and session options); `ours-24k` (the caller's audio at livekit's default 24 kHz) and
`ours-no-agc` (no automatic gain control) price one audio setting each, `ours-memory-monitor`
livekit's sampling of each job process's memory (on by default in livekit); `ours-thread` and
`plain-thread` run every call as a thread of the worker's process (AGENT_JOB_EXECUTOR=thread).
`--cost` adds one scripted standard call for bench/results/cost.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from livekit import api  # noqa: E402

from bench import density_profile, density_proc as proc  # noqa: E402
from bench.common import machine, percentiles  # noqa: E402
from bench.density_rig import QUESTIONS, VARIANTS, Rig, WorkerTree, say  # noqa: E402
from tests.integration.harness import network  # noqa: E402
from tests.integration.harness.caller import HeardTurn, joined, speak  # noqa: E402

DEFAULT_VARIANTS = ("ours", "plain", "ours-thread", "plain-thread")


def lost(turn: HeardTurn) -> bool:
    return turn.timed_out or turn.answer_start is None or turn.first_audio is None


async def one_caller(rig: Rig, variant: str, room: str, turns: int, offset: float, ready: asyncio.Event,
                     joined_count: list[int], samples: list, out: list[HeardTurn]) -> None:
    await rig.create_room(room, variant)
    async with joined(rig.livekit.url, rig.livekit.api_key, rig.livekit.api_secret, room,
                      join_timeout=120.0) as conversation:
        joined_count[0] += 1
        await ready.wait()
        await asyncio.sleep(offset)  # callers do not all speak at the same moment
        for index in range(turns):
            question = QUESTIONS[index % len(QUESTIONS)]
            out.append(await conversation.ask(question, turn_timeout=30.0, samples=samples[index % len(samples)]))


async def step(rig: Rig, variant: str, n: int, turns: int, samples: list, profile_seconds: float = 0.0) -> dict:
    """N concurrent calls on the variant's worker, each asking `turns` questions."""
    worker = rig.workers[variant]
    ready, joined_count, heard = asyncio.Event(), [0], []
    rooms = [f"density-{variant}-{n}-{i}-{os.urandom(3).hex()}" for i in range(n)]
    spacing = 6.0 / n  # one question start every few seconds across the callers, at first
    tasks: list[asyncio.Task] = []
    deadline = time.monotonic() + 60 + 15 * n
    # One call after the other: livekit-agents reserves threshold / num_idle_processes of load for
    # each job it is accepting while it has none running, so a burst of simultaneous rooms at an
    # idle worker is partly refused (and livekit-server does not retry a lone worker).
    for i, room in enumerate(rooms):
        tasks.append(asyncio.create_task(
            one_caller(rig, variant, room, turns, i * spacing, ready, joined_count, samples, heard)))
        while joined_count[0] <= i:
            failed = [t for t in tasks if t.done() and t.exception()]
            if failed or time.monotonic() > deadline:
                for task in tasks:
                    task.cancel()
                raise RuntimeError(f"{variant}: only {joined_count[0]}/{n} calls joined: "
                                   f"{failed[0].exception() if failed else 'timeout'}")
            await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)  # the job processes are up; let their start-up settle
    pids = proc.tree(worker.pid)
    rig0 = rig_cpu_seconds(rig)
    cpu0, clock, started = proc.cpu_seconds(pids), proc.CoreClock(), time.monotonic()
    threads0 = proc.thread_cpu(pids)
    ready.set()
    memory_task = asyncio.create_task(rig.sample_memory(worker, n))
    profile_task = asyncio.create_task(density_profile.record(
        worker.pid, profile_seconds, rig.workdir / f"profile-{variant}-{n}.txt")) if profile_seconds else None
    results = await asyncio.gather(*tasks, return_exceptions=True)
    elapsed = time.monotonic() - started
    rig_cpu = rig_cpu_seconds(rig) - rig0
    pids_after = proc.tree(worker.pid)
    cpu = proc.cpu_seconds(pids_after) - cpu0
    threads = proc.thread_cpu(pids_after)
    by_thread = {name: round(seconds - threads0.get(name, 0.0), 2) for name, seconds in threads.items()}
    busy = clock.busy()
    memory = await memory_task
    errors = [repr(r) for r in results if isinstance(r, BaseException)]
    await rig.wait_idle(worker)
    first = [t.first_audio_ms for t in heard if not lost(t)]
    answer = [t.answer_ms for t in heard if not lost(t)]
    call_minutes = n * elapsed / 60
    worker_busy = busy.get(rig.worker_core, 0.0)
    rig_busy = max(share for core, share in busy.items() if core != rig.worker_core)
    return {
        "n": n, "turns": len(heard), "lost": sum(lost(t) for t in heard) + len(errors), "errors": errors[:3],
        "first_audio_ms": {**percentiles(first), "n": len(first)},
        "answer_ms": {**percentiles(answer), "n": len(answer)},
        "window_s": round(elapsed, 1),
        "cpu_seconds": round(cpu, 2),
        "cpu_seconds_per_call_minute": round(cpu / call_minutes, 2),
        "cpu_seconds_by_thread_name": dict(sorted(((k, v) for k, v in by_thread.items() if v >= 0.05),
                                                  key=lambda item: -item[1])),
        "worker_core_busy": worker_busy, "rig_cores_busy": {c: s for c, s in busy.items() if c != rig.worker_core},
        "rig_limited": rig_busy >= 0.9,
        # The rig's own share of a core (this process, livekit-server, the stand-ins): the rest of
        # rig_cores_busy is other programs on the machine.
        "rig_own_core_share": round(rig_cpu / elapsed, 3),
        "load_average": proc.load_average(),
        "memory": memory,
        **({"profile": await profile_task} if profile_task else {}),
    }


def rig_cpu_seconds(rig: Rig) -> float:
    """CPU seconds of this process and its descendants other than the workers' trees."""
    workers = {pid for worker in rig.workers.values() for pid in proc.tree(worker.pid)}
    return proc.cpu_seconds([pid for pid in proc.tree(os.getpid()) if pid not in workers])


def within_budget(row: dict, baseline_p95: float | None, budget_ms: float) -> bool:
    p95 = row["first_audio_ms"]["p95"]
    return row["lost"] == 0 and p95 is not None and baseline_p95 is not None and p95 <= baseline_p95 + budget_ms


def linear_fit(points: list[tuple[float, float]]) -> tuple[float, float] | None:
    """(intercept, slope) of the least-squares line through `points`; None under two distinct x."""
    if len({x for x, _ in points}) < 2:
        return None
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / sum((x - mean_x) ** 2 for x, _ in points)
    return mean_y - slope * mean_x, slope


def cpu_bound_estimate(rows: list[dict]) -> dict | None:
    """The worker's CPU per minute as fixed + per_call x N (least squares over the steps), and the
    calls one core (60 CPU-s a minute) would carry at 100 %: an upper bound that holds even when
    the rig or the machine, not the worker, limited the run."""
    # Steps that lost turns did less work than their N: left out.
    fit = linear_fit([(row["n"], row["cpu_seconds_per_call_minute"] * row["n"]) for row in rows if row["lost"] == 0])
    if fit is None:
        return None
    fixed, per_call = fit
    return {"fixed_cpu_seconds_per_minute": round(fixed, 2), "cpu_seconds_per_minute_per_call": round(per_call, 2),
            "calls_per_core_at_full_cpu": round((60 - fixed) / per_call, 1) if per_call > 0 else None}


def memory_estimate(rows: list[dict]) -> dict | None:
    """The worker tree's PSS as fixed + per_call x N (least squares over the steps): what one more
    call adds, whether calls run as job processes or as threads of one process."""
    fit = linear_fit([(row["n"], row["memory"]["tree_pss_mib"]) for row in rows
                      if row["lost"] == 0 and row["memory"].get("tree_pss_mib")])
    if fit is None:
        return None
    return {"fixed_mib": round(fit[0], 1), "mib_per_call": round(fit[1], 1)}


def summarize(rows: list[dict], budget_ms: float, cores: int) -> dict:
    baseline = rows[0]["first_audio_ms"]["p95"] if rows and rows[0]["n"] == 1 else None
    for row in rows:
        row["within_budget"] = within_budget(row, baseline, budget_ms)
    # The largest N within the budget, every smaller N included (a dip that recovers is not capacity).
    best = None
    for row in rows:
        if not row["within_budget"]:
            break
        best = row
    return {
        "cpu_bound_estimate": cpu_bound_estimate(rows),
        "memory_estimate": memory_estimate(rows),
        "first_audio_p95_at_n1_ms": baseline,
        "budget_first_audio_p95_ms": None if baseline is None else round(baseline + budget_ms, 1),
        "calls_at_budget": best["n"] if best else 0,
        "calls_per_core_at_budget": round(best["n"] / cores, 2) if best else 0.0,
        "cpu_seconds_per_call_minute_at_budget": best["cpu_seconds_per_call_minute"] if best else None,
        "mb_per_call_at_budget": best["memory"].get("mb_per_call") if best else None,
        "rig_limited_at_or_before_budget": any(r["rig_limited"] for r in rows[: rows.index(best) + 2]) if best else False,
        "steps": rows,
    }


async def run(args: argparse.Namespace, workdir: Path) -> dict:
    samples = [await asyncio.to_thread(speak, question) for question in QUESTIONS]
    async with Rig(workdir, args.worker_core, args.variants) as rig:
        steps: dict[str, list[dict]] = {variant: [] for variant in args.variants}
        active = list(args.variants)
        for index, n in enumerate(args.sizes):
            order = list(active) if index % 2 == 0 else list(reversed(active))  # a copy: a variant may drop out
            for variant in order:
                turns = args.baseline_turns if n == 1 else args.turns
                profile = args.profile_seconds if n == args.profile_n else 0.0
                row = await step(rig, variant, n, turns, samples, profile)
                steps[variant].append(row)
                say(f"{variant} N={n}: first audio {row['first_audio_ms']} ms, lost {row['lost']}, "
                    f"{row['cpu_seconds_per_call_minute']} CPU-s/call-min, worker core {row['worker_core_busy']}, "
                    f"rig {row['rig_cores_busy']}, {row['memory'].get('mb_per_call')} MB/call")
                baseline = steps[variant][0]["first_audio_ms"]["p95"]
                if not within_budget(row, baseline, args.budget_ms) and n > 1 and not args.keep_going:
                    active.remove(variant)
            if not active:
                break
        cost = await rig.standard_call(samples) if args.cost else None
        variants = {variant: summarize(rows, args.budget_ms, 1) for variant, rows in steps.items()}
    result = {
        "machine": machine(
            livekit_server="v1.13.5 (--dev, loopback)", livekit_agents=metadata.version("livekit-agents"),
            placement=f"the worker process tree on core {args.worker_core} only (sched affinity, inherited by its "
                      f"job processes); livekit-server, the callers and the provider stand-ins on the other cores",
            providers="scripted HTTP stand-ins on loopback (tests/integration/harness/scripted_providers.py): "
                      f"LLM TTFT 70B {rig.script['main_ttft']} s / 8B {rig.script['fast_ttft']} s, "
                      f"Deepgram live STT (final {rig.script['stt']} s after the speech), TTS first byte {rig.script['tts_ttfb']} s",
            shared="the two cores are shared with other programs on this machine (see load_average per step)",
        ),
        "method": {
            "clock": "caller's time.monotonic(), end of its spoken question to the first audible agent frame",
            "budget": f"first-audio p95 <= p95 at N=1 + {args.budget_ms} ms and no lost turn",
            "cpu": "utime+stime (+ reaped children) of the worker's process tree over the questions' window, "
                   "divided by N x window minutes",
            "memory": "smaps_rollup of the tree mid-window: job processes' unique (Private_*) and PSS memory; "
                      "mb_per_call = the job processes' PSS per call (their unique memory plus their share of "
                      "what they share with the forkserver they came from); memory_estimate = the tree's PSS fitted "
                      "as fixed + per call x N over the steps (the figure that also holds for calls run as threads)",
            "turns_per_call": {"n1": args.baseline_turns, "other": args.turns},
            "worker_cores": 1,
        },
        "variants": variants,
    }
    # What our features cost: ours / plain on the same executor, per N.
    ratios = {f"{ours} / {plain}": _cpu_ratio(variants[ours]["steps"], variants[plain]["steps"])
              for ours, plain in (("ours", "plain"), ("ours-thread", "plain-thread"))
              if ours in variants and plain in variants}
    if ratios:
        result["features_cpu_ratio"] = ratios
    if cost:
        result["cost"] = cost
    return result


def _cpu_ratio(ours: list[dict], plain: list[dict]) -> dict:
    """CPU-seconds per call-minute, ours / plain, at each N both ran."""
    by_n = {row["n"]: row for row in plain}
    return {str(row["n"]): round(row["cpu_seconds_per_call_minute"] / by_n[row["n"]]["cpu_seconds_per_call_minute"], 3)
            for row in ours if row["n"] in by_n and by_n[row["n"]]["cpu_seconds_per_call_minute"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 3, 4, 6, 8, 12, 16])
    parser.add_argument("--turns", type=int, default=8, help="questions per call at N > 1 (default 8)")
    parser.add_argument("--baseline-turns", type=int, default=16, help="questions at N = 1 (default 16)")
    parser.add_argument("--budget-ms", type=float, default=100.0)
    parser.add_argument("--variants", type=lambda s: s.split(","), default=list(DEFAULT_VARIANTS),
                        help=f"of {','.join(VARIANTS)} (default {','.join(DEFAULT_VARIANTS)})")
    parser.add_argument("--worker-core", type=int, default=0)
    parser.add_argument("--keep-going", action="store_true", help="run every size even past the budget")
    parser.add_argument("--profile-n", type=int, default=2,
                        help="profile the worker tree with py-spy at this N (default 2: every run reaches it)")
    parser.add_argument("--profile-seconds", type=float, default=30.0)
    parser.add_argument("--cost", action="store_true", help="also a scripted standard call -> --cost-out")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "density.json")
    parser.add_argument("--cost-out", type=Path, default=ROOT / "bench" / "results" / "cost.json")
    parser.add_argument("--keep", type=Path, help="keep the programs' logs in this folder")
    args = parser.parse_args()
    if unknown := set(args.variants) - set(VARIANTS):
        parser.error(f"--variants: unknown {sorted(unknown)}; use {','.join(VARIANTS)}")
    if args.sizes[0] != 1:
        parser.error("--sizes must start at 1: the budget is relative to one call")
    if os.environ.get("TESTBED_HOST_NETWORK") != "1" and not network.in_closed_network():
        network.isolate_to_loopback()
    others = set(range(os.cpu_count() or 1)) - {args.worker_core}
    if not others:
        parser.error("--worker-core: the machine needs a second core for the callers and livekit-server")
    os.sched_setaffinity(0, others)  # this process and everything it starts; the worker moves itself
    started = time.monotonic()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="bench-density-"))
    results = asyncio.run(run(args, workdir))
    results["wall_seconds"] = round(time.monotonic() - started, 1)
    cost = results.pop("cost", None)
    if args.keep is None:
        shutil.rmtree(workdir, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    if cost:
        args.cost_out.write_text(json.dumps({"machine": results["machine"], **cost}, indent=2) + "\n")
    for variant, summary in results["variants"].items():
        say(f"{variant}: {summary['calls_per_core_at_budget']} calls per core at the budget, "
            f"{summary['cpu_seconds_per_call_minute_at_budget']} CPU-s per call-minute, "
            f"{summary['mb_per_call_at_budget']} MB per call")
    say(f"features CPU ratio {results.get('features_cpu_ratio')}; wrote {args.out}")


if __name__ == "__main__":
    main()
