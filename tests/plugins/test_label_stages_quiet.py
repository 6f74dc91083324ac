"""``label`` with an ``openai:`` provider shares one client between its explain and score
stages, each in its own event loop (issue 26, item 10): the first stage's client must be
closed on its own loop, so no "Event loop is closed" traceback is printed between the
stages when the garbage collector finds it."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from hostile_server import HostileServer, answer
from llm_fixtures import fill

import featurelens


def _behave(n, path, headers, body):
    last = (body.get("messages") or [{}])[-1].get("content", "")
    if isinstance(last, list):
        last = " ".join(block.get("text", "") for block in last)
    shown = len(re.findall(r"<example \d+>", last))
    if shown:
        return answer(path, "[" + ",".join("1" if i % 2 else "0" for i in range(shown)) + "]")
    return answer(path, "Explanation: numbers")


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_label_prints_no_traceback_between_stages(store_path, provider):
    with featurelens.open_store(store_path) as store:
        fill(store, 4, n_sequences=32, examples_per_feature=6)
    server = HostileServer(_behave).start()
    env = {**os.environ, "OPENAI_API_KEY": "sk-quiet-stages-0123456789",
           "ANTHROPIC_API_KEY": "sk-ant-quiet-stages-0123456789", "FEATURELENS_LOAD_PLUGINS": ""}
    url = server.openai_url if provider == "openai" else server.anthropic_url
    try:
        done = subprocess.run(
            [sys.executable, "-m", "featurelens", "label", "--option", "features_per_request=1", "--llm",
             f"{provider}:m", "--scorer", "detection", "--provider-option", f"base_url={url}",
             "--no-progress", "--store", str(store_path)],
            capture_output=True, text=True, env=env, timeout=300)
    finally:
        server.stop()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "Event loop is closed" not in done.stderr, done.stderr
