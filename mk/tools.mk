# Cluster tools (helm, kubectl, promtool, prometheus) into .testbed/bin; see scripts/install-tools.
.PHONY: tools
tools: .testbed/bin/helm .testbed/bin/promtool

.testbed/bin/helm .testbed/bin/promtool &: scripts/install-tools
	PY=$(PYTHON) scripts/install-tools .testbed/bin
