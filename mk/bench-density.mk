# Calls per core and cost per call-minute (issue 13; not part of `make test`): one real worker, N
# callers in N livekit-server rooms, providers stood in at HTTP level. Writes
# bench/results/density.json and bench/results/cost.json. The worker runs on core 0, the rest on
# the other cores: run it on an otherwise quiet machine. `bench-density-options` prices the
# worker's audio and memory settings against its defaults (bench/results/density-options.json).
.PHONY: bench-density bench-density-options

bench-density: setup testbed
	$(PY) bench/density.py --cost --out bench/results/density.json --cost-out bench/results/cost.json

bench-density-options: setup testbed
	$(PY) bench/density.py --variants ours,ours-24k,ours-no-agc,ours-memory-monitor --sizes 1,2,4 \
		--out bench/results/density-options.json
