# The scaling policy through a simulated day of calls, and the sweep behind its defaults (not part of `make test`, about 7 minutes on 2 shared cores): writes bench/results/autoscale.json and .png.
.PHONY: bench-autoscale

bench-autoscale: setup
	$(PY) bench/autoscale.py --out bench/results/autoscale.json --plot bench/results/autoscale.png
