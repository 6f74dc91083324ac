#!/usr/bin/env bash
# Install the real sparsify and sae_lens packages into .reference-libs/, apart from
# featurelens's environment (their pins would fight ours), for the slow tests that
# compare our readers with checkpoints those libraries write themselves
# (tests/test_formats_reference_libs.py). --no-deps: they reuse .venv's torch,
# transformers, safetensors, numpy and huggingface_hub; the rest is listed here.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET="${FEATURELENS_REFERENCE_LIBS:-.reference-libs}"
PY="${PYTHON:-.venv/bin/python}"
if PYTHONPATH="$TARGET" "$PY" -c "import sparsify, sae_lens" 2>/dev/null; then exit 0; fi
"$PY" -m pip install -q --no-deps --target "$TARGET" \
    eai-sparsify==1.3.3 sae-lens==6.54.12 "transformer-lens<3" \
    simple-parsing docstring-parser einops natsort datasets dill multiprocess xxhash \
    jaxtyping wadler-lindig fancy-einsum better-abc beartype schedulefree typeguard wandb \
    platformdirs pandas python-dateutil tzdata
PYTHONPATH="$TARGET" "$PY" -c "import sparsify, sae_lens" >/dev/null 2>&1 \
    || { echo "reference libraries installed in $TARGET but do not import" >&2; exit 1; }
