# Voice agent worker: keyless demo, latency benchmark, worker tests (see docs/worker.md).
.PHONY: demo-offline bench-latency test-worker

# The worker alone, in process: real livekit audio-path sessions with scripted providers (`make demo` is the whole system).
demo-offline: setup
	$(PY) -m agent_worker.demo --turns 5

# Writes bench/results/latency.json (no pre-response vs the seed prototype vs ours).
bench-latency: setup
	$(PY) bench/latency.py --turns 60 --out bench/results/latency.json

test-worker: setup
	$(PY) -m pytest tests/worker -q
