"""`voiceagent-operator`: run the operator, or print its CRDs.

    voiceagent-operator run [--all-namespaces | -n NS ...] [kopf run options]
    voiceagent-operator crds            # the CRDs (VoiceAgent and Kopf peering) as YAML
"""

from __future__ import annotations

import os
import sys

from .crd import crd_manifest, kopf_peering_crds, render

HANDLERS_MODULE = "voiceagent_operator.handlers"
DEFAULT_PEERING = "voiceagent-operator"
DEFAULT_LIVENESS = "http://0.0.0.0:8080/healthz"


def run_arguments(args: list[str]) -> list[str]:
    """`kopf run` arguments: our handlers, all namespaces unless some are named, a liveness endpoint,
    and mandatory peering (`--peering=NAME`, default DEFAULT_PEERING) unless `--standalone`: Kopf then
    holds every handler until it has seen its peers, and fails rather than run unpeered."""
    out = ["run", "-m", HANDLERS_MODULE]
    scoped = any(arg in ("-n", "--namespace", "-A", "--all-namespaces") or arg.startswith("--namespace=") for arg in args)
    if not scoped:
        out.append("--all-namespaces")
    if not any(arg.startswith("--liveness") for arg in args):
        out.append(f"--liveness={DEFAULT_LIVENESS}")
    peered = any(arg in ("-P", "--peering", "--standalone") or arg.startswith(("--peering=", "-P")) for arg in args)
    if not peered and not os.environ.get("KOPF_RUN_PEERING"):
        out.append(f"--peering={DEFAULT_PEERING}")
    return out + args


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    if args[0] == "crds":
        sys.stdout.write(render([crd_manifest(), *kopf_peering_crds()]))
        return 0
    if args[0] == "run":
        from kopf.cli import main as kopf_main

        return kopf_main(args=run_arguments(args[1:]), prog_name="voiceagent-operator", standalone_mode=True) or 0
    print(f"unknown command {args[0]!r}; use `run` or `crds`", file=sys.stderr)
    return 2
