"""`agent-worker`: livekit's agent CLI for this worker, plus `config` and `demo`.

    agent-worker start [--dev] [--url ...]   run the worker (livekit's `start`)
    agent-worker dev                         the same as `start --dev`
    agent-worker console --connect-addr ...  livekit's console, driven by the `lk` CLI
    agent-worker download-files              fetch plugin model files (used at image build)
    agent-worker config                      print the effective configuration, secrets redacted
    agent-worker demo [--turns N]            keyless demo: scripted providers, real audio path

Configuration errors print one line naming the variable and the fix, and exit with status 2.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from types import FrameType

from .config import ConfigError, Settings, load_settings

USAGE = __doc__ or ""
LIVEKIT_COMMANDS = ("start", "console")


def _settings_or_exit() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        print(f"agent-worker: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command = args[0] if args else ""
    if command in ("", "-h", "--help", "help"):
        print(USAGE)
        return 0 if command else 2
    if command == "config":
        print(json.dumps(_settings_or_exit().redacted(), indent=2, sort_keys=True))
        return 0
    if command == "demo":
        from .demo import main as demo_main

        return demo_main(args[1:])
    if command == "download-files":
        from livekit.agents.__main__ import main as livekit_main

        return livekit_main(["download-files"])
    if command == "dev":
        command, args = "start", ["start", "--dev", *args[1:]]
    if command in LIVEKIT_COMMANDS:
        return _run_livekit(command, args[1:], _settings_or_exit())
    print(f"agent-worker: unknown command {command!r}; use one of config, start, dev, console, download-files, demo", file=sys.stderr)
    return 2


def _run_livekit(command: str, rest: list[str], settings: Settings) -> int:
    # The multiprocess directory must be set before prometheus_client is first imported.
    from .exporter import prepare_multiproc_dir, serve_metrics

    path = prepare_multiproc_dir()
    if command == "start":
        try:
            serve_metrics(settings.metrics_port, path=path)
        except OSError as exc:
            print(f"agent-worker: AGENT_METRICS_PORT={settings.metrics_port} cannot be served ({exc.strerror}); "
                  "set AGENT_METRICS_PORT to a free port", file=sys.stderr)
            return 2
    _exit_on_sigterm()
    from livekit.agents.__main__ import main as livekit_main

    from . import server as server_module

    if command == "start":
        asyncio.run(server_module.synthesize_stock_phrases(settings))
    if not rest or rest[0].startswith("-"):
        rest = [str(server_module.__file__), *rest]
    return livekit_main([command, *rest])


def _exit_on_sigterm() -> None:
    """Exit at a SIGTERM that comes before livekit installs its own handler, which drains the worker.

    In a container this process is PID 1, and PID 1 ignores a signal left at its default action: a pod
    stopped while its worker is still starting would otherwise wait out its whole grace period. No call
    runs before livekit's handler is in place, so there is nothing to drain.
    """
    signal.signal(signal.SIGTERM, _exit_now)


def _exit_now(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    sys.exit(main())
