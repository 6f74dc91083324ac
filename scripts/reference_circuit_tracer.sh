#!/usr/bin/env bash
# Install circuit-tracer 0.5.0 in its own venv (default /work/refvenvs/circuit-tracer, or
# $FEATURELENS_CIRCUIT_TRACER_VENV), apart from featurelens's .venv: it pins transformers 4.x
# and nnsight, which would fight ours. The venv reuses .venv's torch (and the rest of its
# packages, after its own) through a .pth file, so nothing large is downloaded twice.
# Pins: nnsight>=0.6,<0.7 (0.8 breaks circuit-tracer's import). Used by the slow test
# tests/graphs/test_circuit_tracer_reference.py and by benchmarks/graphs.py.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${FEATURELENS_CIRCUIT_TRACER_VENV:-/work/refvenvs/circuit-tracer}"
PY="${PYTHON:-.venv/bin/python}"
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import circuit_tracer" 2>/dev/null; then exit 0; fi
BASE="$("$PY" -c 'import sys; print(sys.base_prefix)')/bin/python3"
SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
"$BASE" -m venv "$VENV"
VSITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$SITE" > "$VSITE/zz_featurelens_venv.pth"
"$VENV/bin/python" -m pip install -q circuit-tracer==0.5.0 "nnsight>=0.6,<0.7"
"$VENV/bin/python" -c "import circuit_tracer" >/dev/null 2>&1 \
    || { echo "circuit-tracer installed in $VENV but does not import" >&2; exit 1; }
