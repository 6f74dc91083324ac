#!/usr/bin/env bash
# Install the headless browser the browser tests drive (Debian's chromium and
# chromium-driver), only when missing. Called by `make test`; safe to rerun.
# Without root or apt-get it says what to install and exits 0: the browser tests
# then skip with the same advice instead of failing the whole run.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup-browser: no apt-get here; install Chromium and its matching chromedriver to run tests/browser/test_chromium.py" >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "setup-browser: run 'sudo apt-get install -y chromium chromium-driver' to enable the browser tests" >&2
    exit 0
  fi
fi
echo "setup-browser: installing chromium and chromium-driver (once)" >&2
if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
        --no-install-recommends chromium chromium-driver >/dev/null; }; then
  echo "setup-browser: apt-get could not install chromium chromium-driver; the browser tests will skip" >&2
fi
