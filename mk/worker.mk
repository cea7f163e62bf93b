# Voice agent worker: keyless demo, latency benchmark, worker tests (see docs/worker.md).
.PHONY: demo bench-latency test-worker

# The main job, keyless for now: real livekit audio-path sessions with scripted providers.
demo: setup
	$(PY) -m agent_worker.demo --turns 5

# Writes bench/results/latency.json (no pre-response vs the seed prototype vs ours).
bench-latency: setup
	$(PY) bench/latency.py --turns 60 --out bench/results/latency.json

test-worker: setup
	$(PY) -m pytest tests/worker -q
