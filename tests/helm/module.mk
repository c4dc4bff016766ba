# tests/helm: the Helm chart (helm/ballast) and the CRD reference.
#
#   make helm-test        lint (Helm 3 and 4), render and check the chart, refuse bad
#                         values, CRD copies identical, docs/crd-reference.md current;
#                         with an API server up, a real install/upgrade/uninstall
#   make crd-reference    regenerate docs/crd-reference.md from crds/

helm-test:
	@bash tests/helm/test-chart.sh

crd-reference:
	@python3 tests/helm/gen-crd-reference.py

.PHONY: helm-test crd-reference
