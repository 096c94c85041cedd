#!/usr/bin/env bash
# Copies the CRDs (crds/, the one source of truth) into the Helm chart's crds/ directory, which Helm
# installs before the templates. tests/chart/test_chart.py fails when the two copies differ.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -f charts/jwt-trust/crds/*.yaml
cp crds/*.yaml charts/jwt-trust/crds/
ls charts/jwt-trust/crds/
