# tests/images: the container images (operator/Dockerfile, nodeagent/Dockerfile).
#
#   make images         build ballast-operator:$(VERSION) and ballast-agent:$(VERSION)
#                       (makes debian:bookworm locally when no registry is reachable)
#   make images-smoke   build them, then run each (--version; start-up with no API server)

images:
	@bash tests/images/build-images.sh

images-smoke: images
	@bash tests/images/smoke.sh

.PHONY: images images-smoke
