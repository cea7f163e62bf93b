"""Printing what the demo does: elapsed-time stamps and the kubectl commands it runs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.integration.harness.processes import REPO_ROOT, TESTBED_BIN

STARTED = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f}s] {message}", flush=True)


class Shell:
    """Runs the test bed's kubectl against one kubeconfig, echoing each command."""

    def __init__(self, kubeconfig: Path) -> None:
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig)}

    def kubectl(self, *args: object, stdin: str | None = None, echo: bool = True, check: bool = True) -> str:
        argv = [str(TESTBED_BIN / "kubectl"), *(str(a) for a in args)]
        result = subprocess.run(argv, env=self.env, input=stdin, capture_output=True, text=True, timeout=180)
        if echo:
            shown = " ".join(str(a).replace(f"{REPO_ROOT}/", "") for a in ("kubectl", *args))
            print(f"$ {shown}\n{result.stdout}{result.stderr}".rstrip(), flush=True)
        if check and result.returncode:
            raise RuntimeError(f"`kubectl {' '.join(map(str, args))}` failed ({result.returncode}): "
                               f"{result.stderr.strip() or result.stdout.strip()}")
        return result.stdout


def fail(message: str) -> None:
    print(f"\ndemo: {message}", file=sys.stderr, flush=True)
