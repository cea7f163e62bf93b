# The local test bed (kube-apiserver, kube-controller-manager, etcd, kwok, livekit-server, Ollama and
# its model, offline speech) into .testbed/; see testbed/README.md. Only what is missing is built.
.PHONY: testbed

testbed: tools setup
	PY=$(PY) testbed/build.sh
