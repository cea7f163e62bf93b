#!/usr/bin/env bash
# Builds the container images without a daemon or a registry, into .testbed/images/:
#   testbed/images.sh [--check] [--report FILE] [IMAGE...]   IMAGE: base pause worker operator (default: all)
# base      Debian bookworm + Python 3.11 from Debian packages (mmdebstrap), imported into buildah's
#           storage as $BASE_IMAGE; the images' Dockerfiles build FROM it (--build-arg BASE).
# pause     the kubelet's sandbox image: testbed/pause/pause.c, static, FROM scratch.
# worker    worker/Dockerfile   -> ghcr.io/agent-worker/agent-worker:<appVersion>
# operator  operator/Dockerfile -> ghcr.io/agent-worker/voiceagent-operator:<appVersion>
# Each image is exported as an OCI archive (.testbed/images/NAME.tar) for
# `ctr -n k8s.io images import`. An image is rebuilt only when the hash of its inputs changes (the
# stamp beside its archive); then a second run takes seconds.
# --check loads the archives into a private containerd and runs each image read-only, as its own
# user, without network (see check_images). --report writes sizes, layers, composition and build
# times as JSON (testbed/images_report.py).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TESTBED=${TESTBED_DIR:-$ROOT/.testbed}
IMAGES=$TESTBED/images
CONTAINERS=$TESTBED/containers
mkdir -p "$IMAGES" "$CONTAINERS" "$TESTBED/logs"

APP_VERSION=$(sed -n 's/^appVersion:[[:space:]]*"\{0,1\}\([^"[:space:]]*\)"\{0,1\}[[:space:]]*$/\1/p' "$ROOT/charts/agent-worker/Chart.yaml")
[[ -n $APP_VERSION ]] || { echo "no appVersion in charts/agent-worker/Chart.yaml" >&2; exit 1; }
WORKER_IMAGE=ghcr.io/agent-worker/agent-worker:$APP_VERSION
OPERATOR_IMAGE=ghcr.io/agent-worker/voiceagent-operator:$APP_VERSION
PAUSE_IMAGE=localhost/testbed/pause:1
BASE_IMAGE=localhost/agent-worker/python-base:bookworm

# The base: Debian's minimal variant plus Python. The merged-usr hook installs usr-is-merged, which
# keeps usrmerge and perl (libperl, perl-modules: 50 MB; perl-base stays) out; documentation and
# translations are not unpacked; the build machine's resolv.conf and hostname, which mmdebstrap
# copies in, are taken out again.
DEBIAN_MIRROR=http://deb.debian.org/debian
BASE_PACKAGES=python3,python3-venv,ca-certificates
MMDEBSTRAP_ARGS=(--variant=minbase --include="$BASE_PACKAGES"
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
  --customize-hook='rm -f "$1/etc/resolv.conf" "$1/etc/hostname"'
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias'
  bookworm)
DEBIAN_SOURCES=("deb $DEBIAN_MIRROR bookworm main" "deb $DEBIAN_MIRROR bookworm-updates main"
  "deb $DEBIAN_MIRROR-security bookworm-security main")
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

say() { printf '>> images: %s\n' "$*"; }

# Seconds since START (an $EPOCHREALTIME), to the millisecond.
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }'; }

# record NAME KIND START: keeps how long NAME's last build (KIND seconds) or up-to-date check
# (KIND cached) took, beside its archive, for --report.
record() { since "$3" >"$IMAGES/.$1.$2"; }
BUILT=()   # the parts this run built (not found up to date)

apt_install() {
  [[ -n ${APT_UPDATED:-} ]] || { apt-get update -qq; APT_UPDATED=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# The Debian packages the builds need (the command and the package share their name).
need_tools() {
  local missing=() tool
  for tool in buildah mmdebstrap gcc; do
    command -v "$tool" >/dev/null || missing+=("$tool")
  done
  # gcc -static needs libc.a.
  [[ -f /usr/lib/$(gcc -dumpmachine 2>/dev/null)/libc.a ]] || missing+=(libc6-dev)
  [[ ${#missing[@]} -eq 0 ]] && return
  say "installing ${missing[*]} (Debian)"
  apt_install "${missing[@]}"
}

# buildah with this checkout's own storage. vfs needs no kernel support (no overlay, no fuse).
bh() {
  buildah --root "$CONTAINERS/storage" --runroot "$CONTAINERS/run" --storage-driver vfs "$@"
}

policy() {
  local file=$CONTAINERS/policy.json
  [[ -s $file ]] || echo '{"default": [{"type": "insecureAcceptAnything"}]}' >"$file"
  echo "$file"
}

image_id() { bh images --noheading --no-trunc --format '{{.ID}}' "$1" 2>/dev/null | awk 'NR == 1'; }

# fresh NAME STAMP: true when NAME's archive and image exist and were built from inputs hashing to STAMP.
fresh() {
  [[ -s $IMAGES/$1.tar && "$(cat "$IMAGES/.$1.stamp" 2>/dev/null)" == "$2" ]]
}

# export_image NAME IMAGE STAMP: writes $IMAGES/NAME.tar (an OCI archive naming IMAGE) and its stamp.
export_image() {
  local tar=$IMAGES/$1.tar
  rm -f "$tar" "$IMAGES/.$1.stamp"
  bh push --quiet --signature-policy "$(policy)" "$2" "oci-archive:$tar:$2" >/dev/null
  echo "$3" >"$IMAGES/.$1.stamp"
  say "$2 -> ${tar#"$ROOT"/} ($(du -m "$tar" | cut -f1) MB)"
}

build_base() {
  local want; want=$(printf '%s\n' "${MMDEBSTRAP_ARGS[@]}" "${DEBIAN_SOURCES[@]}" | sha256sum | cut -c1-16)
  local start=$EPOCHREALTIME
  if [[ "$(cat "$IMAGES/.base.stamp" 2>/dev/null)" == "$want" && -n $(image_id "$BASE_IMAGE") ]]; then
    record base cached "$start"; say "base: up to date ($BASE_IMAGE)"; return
  fi
  local log=$TESTBED/logs/images-base.log tar; tar=$(mktemp -d)/base.tar
  say "base: mmdebstrap bookworm + $BASE_PACKAGES — log: $log"
  if ! mmdebstrap "${MMDEBSTRAP_ARGS[@]}" "$tar" "${DEBIAN_SOURCES[@]}" >"$log" 2>&1; then
    tail -n 30 "$log"; say "FAILED: base"; exit 1
  fi
  local container; container=$(bh from --quiet scratch)
  bh add --quiet "$container" "$tar" / >/dev/null
  bh config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8 \
    --cmd python3 --created-by "mmdebstrap ${MMDEBSTRAP_ARGS[*]}" "$container"
  bh commit --quiet --rm "$container" "$BASE_IMAGE" >/dev/null
  rm -rf "$(dirname "$tar")"
  echo "$want" >"$IMAGES/.base.stamp"
  record base seconds "$start"; BUILT+=(base)
  say "base: $BASE_IMAGE in $(cat "$IMAGES/.base.seconds") s"
}

PAUSE_CFLAGS="-static -Os -s -Wall -Wextra -Werror"
build_pause() {
  local source=$ROOT/testbed/pause/pause.c want start=$EPOCHREALTIME
  want=$({ sha256sum "$source"; echo "$PAUSE_CFLAGS"; } | sha256sum | cut -c1-16)
  if fresh pause "$want" && [[ -n $(image_id "$PAUSE_IMAGE") ]]; then
    record pause cached "$start"; say "pause: up to date ($PAUSE_IMAGE)"; return
  fi
  local dir; dir=$(mktemp -d)
  # shellcheck disable=SC2086
  gcc $PAUSE_CFLAGS -o "$dir/pause" "$source"
  local container; container=$(bh from --quiet scratch)
  bh copy --quiet "$container" "$dir/pause" /pause >/dev/null
  bh config --entrypoint '["/pause"]' --user 65535:65535 "$container"
  bh commit --quiet --rm "$container" "$PAUSE_IMAGE" >/dev/null
  rm -rf "$dir"
  export_image pause "$PAUSE_IMAGE" "$want"
  record pause seconds "$start"; BUILT+=(pause)
}

# inputs_stamp PATH...: the hash of the files under PATHs (as .dockerignore lets them into the build
# context) and of the base image.
inputs_stamp() {
  {
    (cd "$ROOT" && find "$@" -type f -not -path '*/__pycache__/*' -not -name '*.pyc' -not -path '*.egg-info/*' \
      -print0 | sort -z | xargs -0 sha256sum)
    image_id "$BASE_IMAGE"
  } | sha256sum | cut -c1-16
}

# build_app NAME DOCKERFILE IMAGE INPUT...: NAME names the archive (NAME.tar) and the log; INPUTs are
# what the Dockerfile copies in (a change elsewhere does not rebuild it).
# No --layers: with vfs every cached layer is a full copy of the file system, and buildah drops a
# multi-stage build's first stage anyway, so pip's layer would not be reused.
build_app() {
  local name=$1 dockerfile=$2 image=$3 want start=$EPOCHREALTIME; shift 3
  want=$(inputs_stamp .dockerignore "$dockerfile" "$@")
  if fresh "$name" "$want" && [[ -n $(image_id "$image") ]]; then
    record "$name" cached "$start"; say "$name: up to date ($image)"; return
  fi
  local log=$TESTBED/logs/images-$name.log
  say "$name: building $image from $dockerfile — log: $log"
  # pip inside RUN steps reaches PyPI through this machine's CA bundle, mounted (never copied in).
  if ! bh bud --isolation chroot --pull=never --signature-policy "$(policy)" \
      --build-arg BASE="$BASE_IMAGE" -v "$CA_BUNDLE:$CA_BUNDLE:ro" \
      -f "$ROOT/$dockerfile" -t "$image" "$ROOT" >"$log" 2>&1; then
    tail -n 30 "$log"; say "FAILED: $name"; exit 1
  fi
  say "$name: built in $(since "$start") s"
  export_image "$name" "$image" "$want"
  record "$name" seconds "$start"; BUILT+=("$name")
  # The image this one replaced, now untagged.
  bh rmi --prune >/dev/null 2>&1 || true
}

# --check: a private containerd imports each archive as the kubelet's containerd would
# (`ctr -n k8s.io images import`) and runs it as the kubelet would here: read-only root, the image's
# own user, /tmp a fresh tmpfs, and a network namespace of its own with nothing in it.
CHECK_DIR="" CHECK_CONTAINERD=""
ctr_() { ctr --address "$CHECK_DIR/containerd.sock" -n k8s.io "$@"; }

# Kills what the check left running, then its containerd, and removes its directory.
stop_check() {
  local task
  for task in $(ctr_ task ls -q 2>/dev/null); do ctr_ task kill -s SIGKILL "$task" >/dev/null 2>&1 || true; done
  kill "$CHECK_CONTAINERD" 2>/dev/null || true
  wait "$CHECK_CONTAINERD" 2>/dev/null || true
  awk -v dir="$CHECK_DIR/" 'index($2, dir) == 1 {print $2}' /proc/self/mounts | sort -r | xargs -r umount -l || true
  rm -rf "$CHECK_DIR"
}

check_images() {
  command -v containerd >/dev/null && command -v runc >/dev/null || { say "installing containerd runc (Debian)"; apt_install containerd runc; }
  CHECK_DIR=$(mktemp -d /tmp/images-check.XXXXXX)
  local dir=$CHECK_DIR
  cat >"$dir/config.toml" <<EOF
version = 2
root = "$dir/root"
state = "$dir/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$dir/containerd.sock"
EOF
  containerd --config "$dir/config.toml" >"$dir/containerd.log" 2>&1 &
  CHECK_CONTAINERD=$!
  trap stop_check EXIT
  local i; for i in $(seq 50); do [[ -S $dir/containerd.sock ]] && break; sleep 0.2; done
  local snapshotter=overlayfs plugins
  plugins=$(ctr_ plugins ls 2>/dev/null || true)
  grep -q 'overlayfs .* ok' <<<"$plugins" || snapshotter=native
  local name
  for name in pause agent-worker voiceagent-operator; do
    ctr_ images import --snapshotter "$snapshotter" "$IMAGES/$name.tar" >/dev/null
  done
  say "check: imported into containerd ($snapshotter): $(ctr_ images ls -q | tr '\n' ' ')"
  # run_ ID IMAGE [CTR-OPTION...] -- COMMAND...
  run_() {
    local id=$1 image=$2 options=(); shift 2
    while [[ $1 != -- ]]; do options+=("$1"); shift; done; shift
    ctr_ run --rm --snapshotter "$snapshotter" --read-only \
      --mount type=tmpfs,src=tmpfs,dst=/tmp,options=rw:nosuid:nodev:mode=1777 "${options[@]}" "$image" "$id" "$@"
  }
  say "check: worker — agent-worker config, then both models offline"
  # Placeholder keys: the default providers (Groq, Deepgram, OpenAI) refuse to start without them.
  local keys=(--env GROQ_API_KEY=placeholder --env DEEPGRAM_API_KEY=placeholder --env OPENAI_API_KEY=placeholder)
  run_ check-worker-config "$WORKER_IMAGE" "${keys[@]}" -- agent-worker config >"$dir/config.json"
  python3 -c 'import json, sys; print(f"agent-worker config: {len(json.load(open(sys.argv[1])))} settings")' "$dir/config.json"
  run_ check-worker-models "$WORKER_IMAGE" "${keys[@]}" -- python3 -c '
import os, socket, numpy as np
from agent_worker.exporter import prepare_multiproc_dir
prepare_multiproc_dir()  # as `agent-worker start` does before it imports the server
import agent_worker.server
from livekit.agents import inference
from livekit.local_inference import EOT, VAD
from livekit.plugins import silero
refused = []
for address in ("pypi.org", "1.1.1.1"):
    try:
        socket.create_connection((address, 443), timeout=3)
        raise SystemExit(f"the container reached {address}")
    except OSError as exc:
        refused.append(f"{address}: {exc.strerror or exc}")
try:
    open("/opt/venv/written", "w")
    raise SystemExit("the root file system is writable")
except OSError as exc:
    root = exc.strerror
silero.VAD.load()
detector = inference.TurnDetector(version="v1-mini")
eot = EOT().predict(np.zeros(16000, dtype=np.int16))
vad = VAD().predict(np.zeros(512, dtype=np.int16))
network = "; ".join(refused)
print(f"uid={os.getuid()}; root file system: {root}; network: {network}")
print(f"silero VAD loaded; {detector.model}: P(end of turn | 1 s silence)={eot:.2f}; local VAD P(speech)={vad:.3f}")
'
  say "check: operator — voiceagent-operator --help"
  run_ check-operator "$OPERATOR_IMAGE" -- sh -c 'echo "uid=$(id -u)"; voiceagent-operator --help' >"$dir/operator.txt"
  sed -n 1,4p "$dir/operator.txt"
  say "check: pause — exits 0 on SIGTERM"
  run_ check-pause "$PAUSE_IMAGE" -- &
  local pause_run=$!
  for i in $(seq 50); do ctr_ task ls -q | grep -x check-pause >/dev/null && break; sleep 0.2; done
  sleep 0.5
  ctr_ task kill -s SIGTERM check-pause
  wait "$pause_run" || { say "FAILED: the pause container exited with status $? on SIGTERM"; exit 1; }
  say "check: passed"
}

report_to() {
  local base_layer
  base_layer=$(bh inspect --type image --format '{{index .OCIv1.RootFS.DiffIDs 0}}' "$BASE_IMAGE")
  python3 "$ROOT/testbed/images_report.py" --images "$IMAGES" --base-diff-id "$base_layer" --out "$1" \
    --note "cold: each image's last real build, export included (base: mmdebstrap and import); cached: the up-to-date check of a second run" \
    --note "buildah $(buildah --version | awk '{print $3}'), vfs storage, chroot isolation, layers gzip-compressed in the archives"
}

check="" report="" parts=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --check) check=1 ;;
    --report) report=${2:?--report needs a file}; shift ;;
    base|pause|worker|operator) parts+=("$1") ;;
    *) say "unknown argument '$1' (--check, --report FILE, base pause worker operator)"; exit 2 ;;
  esac
  shift
done
[[ ${#parts[@]} -gt 0 ]] || parts=(base pause worker operator)
# The worker and operator build on the base: make sure of it first.
[[ " ${parts[*]} " =~ \ (worker|operator)\  && ! " ${parts[*]} " =~ \ base\  ]] && parts=(base "${parts[@]}")
need_tools
total=$EPOCHREALTIME load_at_start=$(cut -d' ' -f1-3 /proc/loadavg)
for part in "${parts[@]}"; do
  case $part in
    base) build_base ;;
    pause) build_pause ;;
    worker) build_app agent-worker worker/Dockerfile "$WORKER_IMAGE" pyproject.toml worker operator ;;
    operator) build_app voiceagent-operator operator/Dockerfile "$OPERATOR_IMAGE" pyproject.toml \
      worker/agent_worker/__init__.py worker/agent_worker/config.py worker/agent_worker/metric_names.py \
      operator/voiceagent_operator ;;
  esac
done
say "ready in $(since "$total") s: $(cd "$IMAGES" && echo *.tar)"
# For --report: the whole of a run that built everything (from an empty store), or built nothing.
if [[ ${#parts[@]} -eq 4 && ${#BUILT[@]} -eq 4 ]]; then
  record all seconds "$total"; echo "$load_at_start" >"$IMAGES/.all.loadavg"
elif [[ ${#parts[@]} -eq 4 && ${#BUILT[@]} -eq 0 ]]; then record all cached "$total"
fi
[[ -z $report ]] || report_to "$report"
[[ -z $check ]] || check_images
