# Cluster tools (helm, kubectl, promtool, prometheus) and actionlint into .testbed/bin; see scripts/install-tools.
.PHONY: tools
tools: .testbed/tools.stamp

.testbed/tools.stamp: scripts/install-tools
	PY=$(PYTHON) scripts/install-tools .testbed/bin
	@touch $@
