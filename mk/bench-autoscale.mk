# The scaling policy through a simulated day of calls (not part of `make test`): writes bench/results/autoscale.json and .svg.
.PHONY: bench-autoscale

bench-autoscale: setup
	$(PY) bench/autoscale.py --out bench/results/autoscale.json --plot bench/results/autoscale.png
