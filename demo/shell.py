"""Printing what the demo does: elapsed-time stamps and the kubectl/helm commands it runs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from tests.integration.harness.processes import REPO_ROOT, TESTBED_BIN

STARTED = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f}s] {message}", flush=True)


class Shell:
    """Runs the test bed's kubectl and helm against one kubeconfig, echoing each command."""

    def __init__(self, kubeconfig: Path, env: Mapping[str, str]) -> None:
        self.kubeconfig = kubeconfig
        self.env = {**os.environ, **env, "KUBECONFIG": str(kubeconfig)}

    def run(self, tool: str, *args: object, stdin: str | None = None, echo: bool = True,
            check: bool = True) -> str:
        argv = [str(TESTBED_BIN / tool), *(str(a) for a in args)]
        result = subprocess.run(argv, env=self.env, input=stdin, capture_output=True, text=True, timeout=180)
        if echo:
            shown = " ".join(str(a).replace(f"{REPO_ROOT}/", "") for a in (tool, *args))
            print(f"$ {shown}\n{result.stdout}{result.stderr}".rstrip(), flush=True)
        if check and result.returncode:
            raise RuntimeError(f"`{tool} {' '.join(map(str, args))}` failed ({result.returncode}): "
                               f"{result.stderr.strip() or result.stdout.strip()}")
        return result.stdout

    def kubectl(self, *args: object, **options: object) -> str:
        return self.run("kubectl", *args, **options)  # type: ignore[arg-type]

    def helm(self, *args: object, **options: object) -> str:
        return self.run("helm", *args, **options)  # type: ignore[arg-type]


def fail(message: str) -> None:
    print(f"\ndemo: {message}", file=sys.stderr, flush=True)
