# Voice agent worker: keyless demo, latency benchmark, worker tests (see docs/worker.md).
.PHONY: demo-offline bench-latency bench-room test-worker

# The worker alone, in process: real livekit audio-path sessions with scripted providers (`make demo` is the whole system).
demo-offline: setup
	$(PY) -m agent_worker.demo --turns 5

# Writes bench/results/latency.json (no pre-response, a filler every turn, ours; from the end of the caller's speech).
bench-latency: setup
	$(PY) bench/latency.py --turns 20 --out bench/results/latency.json

# Writes bench/results/room.json: the real worker in a livekit-server room on the test bed, with
# and without the pre-response, heard by a caller over WebRTC.
bench-room: setup testbed
	$(PY) bench/room.py --rounds 8 --out bench/results/room.json

test-worker: setup
	$(PY) -m pytest tests/worker -q
