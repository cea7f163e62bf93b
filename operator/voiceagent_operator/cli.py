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


def scans_cluster(args: list[str]) -> bool:
    """Whether Kopf should list namespaces and watch CRDs cluster-wide (its "scanning"): not when the
    operator serves only namespaces named exactly (`-n team-a -n team-b`, no `--all-namespaces`, no
    glob or negation), the chart's namespaced mode, whose Roles grant nothing cluster-wide. Kopf then
    serves those namespaces as named and finds the CRDs once at start (API discovery needs no Role)."""
    named: list[str] = []
    for i, arg in enumerate(args):
        if arg in ("-A", "--all-namespaces"):
            return True
        if arg in ("-n", "--namespace") and i + 1 < len(args):
            named.append(args[i + 1])
        elif arg.startswith("--namespace="):
            named.append(arg.removeprefix("--namespace="))
        elif arg.startswith("-n") and len(arg) > 2 and not arg.startswith("--"):
            named.append(arg[2:])
    if not named:
        return True
    return any(char in pattern for pattern in named for char in "!*?,")


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    if args[0] == "crds":
        sys.stdout.write(render([crd_manifest(), *kopf_peering_crds()]))
        return 0
    if args[0] == "run":
        # Kopf imports the official Kubernetes client whenever it is installed, only to recognise its
        # objects; the operator passes none (kube.py speaks HTTP itself), and the client's generated
        # models would take about 35 MiB of every replica's memory.
        sys.modules.setdefault("kubernetes", None)  # type: ignore[assignment]
        from kopf.cli import main as kopf_main

        # Read by the handlers (OperatorOptions.scan_cluster) when Kopf imports them; an explicit
        # VOICEAGENT_SCAN_CLUSTER wins.
        os.environ.setdefault("VOICEAGENT_SCAN_CLUSTER", str(scans_cluster(args[1:])).lower())
        from .standby import Standby

        standby = Standby().install()
        while True:  # one Kopf run, or more when a replica that served is told to stand by (see `standby`)
            standby.new_run()
            try:
                code = kopf_main(args=run_arguments(args[1:]), prog_name="voiceagent-operator", standalone_mode=True)
            except SystemExit as end:
                code = end.code
            if not standby.restart:
                return code or 0
    print(f"unknown command {args[0]!r}; use `run` or `crds`", file=sys.stderr)
    return 2
