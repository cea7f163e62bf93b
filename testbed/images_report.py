"""Sizes, layers and composition of the images `testbed/images.sh` exported, as JSON.

    python3 testbed/images_report.py --images .testbed/images --out bench/results/images.json

Reads only the OCI archives (and the build times images.sh left beside them): each layer's
compressed size, the bytes of the files in it, and which of those bytes are the base, the Python
virtual environment, and the model files. Standard library only.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import io
import json
import os
import platform
import tarfile
from pathlib import Path

ARCHIVES = {"agent-worker": "worker/Dockerfile", "voiceagent-operator": "operator/Dockerfile", "pause": "testbed/pause/pause.c"}
VENV = "opt/venv/"
# The models the worker loads, and the package each ships in (nothing is downloaded).
MODELS = {
    "silero_vad.onnx": ("livekit-plugins-silero wheel", "/livekit/plugins/silero/resources/silero_vad.onnx"),
    "turn-detector v1-mini + streaming VAD": (
        "livekit-local-inference wheel: weights compiled into the library's .rodata (34.6 of its 35 MB)",
        "/livekit/local_inference/_native.",
    ),
}
MB = 1_000_000


def blob(archive: tarfile.TarFile, digest: str) -> bytes:
    algorithm, value = digest.split(":", 1)
    member = archive.extractfile(f"blobs/{algorithm}/{value}")
    assert member is not None, f"{digest} missing from {archive.name}"
    return member.read()


def layer_files(archive: tarfile.TarFile, descriptor: dict) -> dict[str, int]:
    """Path -> size of each regular file in one layer (gzip or plain tar)."""
    data = blob(archive, descriptor["digest"])
    if descriptor["mediaType"].endswith("gzip"):
        data = gzip.decompress(data)
    files: dict[str, int] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r|") as layer:
        for entry in layer:
            if entry.isfile():
                files[entry.name.removeprefix("./")] = entry.size
    return files


def describe(path: Path, source: str, base_digest: str | None) -> dict:
    with tarfile.open(path) as archive:
        index = json.loads(archive.extractfile("index.json").read())  # type: ignore[union-attr]
        manifest_descriptor = index["manifests"][0]
        manifest = json.loads(blob(archive, manifest_descriptor["digest"]))
        config = json.loads(blob(archive, manifest["config"]["digest"]))
        layers, composition = [], {"base": 0, "venv": 0, "models": 0, "other": 0}
        models = dict.fromkeys(MODELS, 0)
        for number, descriptor in enumerate(manifest["layers"]):
            files = layer_files(archive, descriptor)
            is_base = number == 0 and base_digest is not None and config["rootfs"]["diff_ids"][0] == base_digest
            # buildah without --layers commits a stage as one layer: name it by its source.
            created_by = config["history"][0]["created_by"] if is_base else source
            if not is_base and source.endswith("Dockerfile"):
                created_by += " (final stage)"
            layers.append({
                "digest": descriptor["digest"],
                "compressed_bytes": descriptor["size"],
                "file_bytes": sum(files.values()),
                "files": len(files),
                "created_by": created_by[:160],
            })
            for name, size in files.items():
                model = next((model for model, (_, pattern) in MODELS.items() if pattern in name), None)
                if is_base:
                    composition["base"] += size
                elif model and name.startswith(VENV):
                    composition["models"] += size
                    models[model] += size
                elif name.startswith(VENV):
                    composition["venv"] += size
                else:
                    composition["other"] += size
    entry = {
        "image": manifest_descriptor.get("annotations", {}).get("org.opencontainers.image.ref.name", ""),
        "built_from": source,
        "archive": path.name,
        "archive_bytes": path.stat().st_size,
        "rootfs_bytes": sum(layer["file_bytes"] for layer in layers),
        "layers": layers,
        # venv excludes the model files, which are counted under models (and listed in model_mb).
        "composition_mb": {key: round(value / MB, 1) for key, value in composition.items() if value >= MB / 20},
        "user": config["config"].get("User", ""),
        "entrypoint": config["config"].get("Entrypoint"),
        "cmd": config["config"].get("Cmd"),
    }
    if any(models.values()):
        entry["model_mb"] = {key: round(value / MB, 1) for key, value in models.items() if value}
    return entry


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def seconds(images: Path, name: str, kind: str) -> float | None:
    try:
        return float(_read(images / f".{name}.{kind}"))
    except ValueError:
        return None


def machine() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "")
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "loadavg_at_report": Path("/proc/loadavg").read_text().split()[:3],
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, required=True, help="the folder of the OCI archives (.testbed/images)")
    parser.add_argument("--base-diff-id", default=None, help="the base image's layer (its rootfs diff_id)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--note", action="append", default=[], help="a line for the report's notes")
    args = parser.parse_args()
    report: dict = {"machine": machine(), "images": {}, "notes": args.note}
    report["models"] = {name: {"from": origin} for name, (origin, _) in MODELS.items()}
    for name, source in ARCHIVES.items():
        path = args.images / f"{name}.tar"
        if not path.exists():
            continue
        entry = describe(path, source, args.base_diff_id)
        entry["build_seconds"] = {"cold": seconds(args.images, name, "seconds"), "cached": seconds(args.images, name, "cached")}
        report["images"][name] = entry
    report["base"] = {"image": "localhost/agent-worker/python-base:bookworm", "build_seconds": seconds(args.images, "base", "seconds")}
    report["make_images_seconds"] = {
        "cold": seconds(args.images, "all", "seconds"),
        "cached": seconds(args.images, "all", "cached"),
        "loadavg_when_cold_build_started": _read(args.images / ".all.loadavg").split(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for name, entry in report["images"].items():
        print(f"{name}: rootfs {entry['rootfs_bytes'] / MB:.0f} MB, archive {entry['archive_bytes'] / MB:.0f} MB, "
              f"{len(entry['layers'])} layers, {entry['composition_mb']}, build {entry['build_seconds']}")


if __name__ == "__main__":
    main()
