# Calls per core and cost per call-minute (issue 13; not part of `make test`): one real worker, N
# callers in N livekit-server rooms, providers stood in at HTTP level. Writes
# bench/results/density.json and bench/results/cost.json. The worker runs on core 0, the rest on
# the other cores: run it on an otherwise quiet machine.
.PHONY: bench-density

bench-density: setup testbed
	$(PY) bench/density.py --cost --out bench/results/density.json --cost-out bench/results/cost.json
