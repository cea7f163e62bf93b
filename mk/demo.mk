# The main job: everything real on loopback, no keys (demo/, issue 5). Builds what the test bed is
# missing first; writes demo-output/turns.txt and demo-output/turns.png.
.PHONY: demo

demo: setup testbed
	$(PY) -m demo
