#!/usr/bin/env bash
# Run the shim's end-to-end module with the oldest supported MLflow client.
#
# usage: .ci/mlflow-compat.sh MAIN_VENV
#
# Builds a second virtualenv (.venv-mlflow-2.20) holding mlflow-skinny 2.20.4, this
# package (with its AWS extra, for the helper) and the test tools, then runs
# tests/e2e/test_shim_mlflow_e2e.py there. The MLflow servers come from MAIN_VENV (the
# skinny client cannot serve). Exits non-zero on any failure and when no test ran.
set -euo pipefail

MAIN_VENV=${1:?usage: $0 MAIN_VENV}
MAIN_VENV=$(cd "$MAIN_VENV" && pwd)
cd "$(dirname "$0")/.."
VENV=.venv-mlflow-2.20
CLIENT_VERSION=2.20.4

if [ ! -x "$VENV/bin/python" ]; then
    "$MAIN_VENV/bin/python" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet \
    "mlflow-skinny==$CLIENT_VERSION" \
    -e ".[aws]" \
    "pytest>=8" "pytest-timeout>=2.3" "moto[server]==5.2.5" "trustme==1.2.1"

installed=$("$VENV/bin/python" -c 'import mlflow; print(mlflow.__version__)')
if [ "$installed" != "$CLIENT_VERSION" ]; then
    echo "mlflow-compat: expected the MLflow client $CLIENT_VERSION, found $installed" >&2
    exit 1
fi
echo "mlflow-compat: MLflow client $installed, servers from $MAIN_VENV"

report=$(mktemp)
trap 'rm -f "$report"' EXIT
HELPER_TEST_SERVER_PYTHON="$MAIN_VENV/bin/python" \
    "$VENV/bin/python" -m pytest tests/e2e/test_shim_mlflow_e2e.py -m mlflow_e2e \
    -p no:cacheprovider --junitxml="$report" "${@:2}"

# pytest exits 0 when every test was skipped; that is not a pass here.
"$VENV/bin/python" scripts/check-junit "$report"
