# Container images without Docker or a registry (testbed/images.sh; see testbed/README.md, "Images"):
# buildah builds worker/Dockerfile and operator/Dockerfile on a Debian-package base and exports OCI
# archives into .testbed/images/ for `ctr -n k8s.io images import`. Only changed inputs rebuild.
.PHONY: images images-check bench-images

images:
	testbed/images.sh

# Loads the archives into a private containerd and runs each image read-only, as uid 10001, offline.
images-check:
	testbed/images.sh --check

# Writes bench/results/images.json: sizes, layers, composition and build times.
bench-images:
	testbed/images.sh --report bench/results/images.json
