# The operator at scale on the real control plane, beside plain Deployments timed to their ReplicaSets in the same run (not part of `make test`): writes bench/results/operator.json.
.PHONY: bench-operator

bench-operator: setup testbed
	$(PY) bench/operator.py --sizes 10,100,500 --out bench/results/operator.json
