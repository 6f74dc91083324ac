#!/usr/bin/env bash
# Build the environment the community model backends are checked in: a venv in
# .community-libs/ (or $FEATURELENS_COMMUNITY_LIBS) with the real TransformerLens and
# nnsight from the package registry, for the slow test that installs community/'s
# plugins with `featurelens plugins install PATH` and compares their features tables with
# the hf backend's (tests/plugins/test_community_backends.py). Apart from .venv: their pins
# (numpy<2, transformers 4.57) would fight ours.
# torch is installed first and pinned (an unpinned torch pulls gigabytes of CUDA wheels);
# nnsight 0.7 and later break its import here (ANCHORS.md), so it stays below 0.7.
# featurelens's own dependencies are resolved together with theirs, then featurelens
# itself is removed again: each test run installs the tree under test.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET="${FEATURELENS_COMMUNITY_LIBS:-.community-libs}"
PYTHON="${PYTHON:-python3}"
FOUND='import importlib.util as u, sys; sys.exit(not (u.find_spec("transformer_lens") and u.find_spec("nnsight")))'
if [ -x "$TARGET/bin/python" ] && "$TARGET/bin/python" -c "$FOUND" 2>/dev/null; then
  exit 0
fi
"$PYTHON" -m venv "$TARGET"
pip() { "$TARGET/bin/python" -m pip --disable-pip-version-check -q "$@"; }
pip install "torch==2.13.0"
# pyarrow 22+ needs numpy 2, which TransformerLens 2 refuses on Python < 3.12.
pip install . "transformer-lens==2.18.0" "nnsight==0.6.3" "pyarrow>=21,<22" "setuptools>=77"
pip uninstall --yes featurelens
"$TARGET/bin/python" -c "import transformer_lens, nnsight, duckdb, polars, pyarrow" >/dev/null 2>&1 \
    || { echo "TransformerLens and nnsight installed in $TARGET but do not import" >&2; exit 1; }
