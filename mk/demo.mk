# The main job: everything real on one machine, no keys (demo/, issues 5 and 9): the chart and the
# VoiceAgent's worker pods on the test bed's real node, from the images `make images` builds.
# Builds what the test bed is missing first; writes demo-output/turns.txt and demo-output/turns.png.
.PHONY: demo

demo: setup testbed images
	$(PY) -m demo
