"""Import a local GGUF file into an Ollama models directory, once, at build time.

`ollama create` is a client of a running server, so this starts `ollama serve` on a free loopback
port with OLLAMA_MODELS pointing at the test bed's directory, runs `ollama create NAME` from a
Modelfile that names the local file (nothing is pulled) above the lines of `--modelfile`, and
stops the server.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_serving(url: str, server: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"ollama serve exited with {server.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"ollama serve was not ready at {url} after {timeout:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ollama", required=True, help="path to the ollama binary")
    parser.add_argument("--models", required=True, help="OLLAMA_MODELS directory to import into")
    parser.add_argument("--gguf", required=True, help="the GGUF file to import")
    parser.add_argument("--name", required=True, help="model name to create")
    parser.add_argument("--modelfile", help="Modelfile lines (TEMPLATE, PARAMETER) to add after FROM")
    parser.add_argument("--log", required=True, help="where the server's output goes")
    args = parser.parse_args()

    host = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "OLLAMA_HOST": host, "OLLAMA_MODELS": args.models, "OLLAMA_NOPRUNE": "1"}
    Path(args.models).mkdir(parents=True, exist_ok=True)
    with open(args.log, "wb") as log, tempfile.TemporaryDirectory() as workdir:
        server = subprocess.Popen([args.ollama, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until_serving(f"http://{host}/api/version", server)
            modelfile = Path(workdir, "Modelfile")
            extra = Path(args.modelfile).read_text() if args.modelfile else ""
            modelfile.write_text(f"FROM {Path(args.gguf).resolve()}\n{extra}")
            created = subprocess.run(
                [args.ollama, "create", args.name, "-f", str(modelfile)],
                env=env, capture_output=True, text=True, timeout=600,
            )
            if created.returncode != 0:
                sys.exit(f"ollama create failed ({created.returncode}): {created.stderr.strip()}")
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
