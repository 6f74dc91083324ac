"""Fixtures the scorer tests share."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

#: Where the OpenAI tokenizer's vocabulary lives next to a checkout (ANCHORS.md), and on this machine.
VOCABS = [Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "o200k_base.tiktoken",
          Path("/work/shared/data/o200k_base.tiktoken")]


@pytest.fixture
def o200k(tmp_path, monkeypatch):
    """tiktoken's o200k_base encoding, loaded offline from the shared vocabulary file."""
    from featurelens.llm import request_tokens

    source = next((p for p in VOCABS if p.is_file()), None)
    if source is None:
        pytest.skip("the o200k vocabulary (shared/data/o200k_base.tiktoken) is not on this machine")
    (tmp_path / "tiktoken").mkdir()
    shutil.copy(source, tmp_path / "tiktoken" / "fb374d419588a4632f3f557e76b4b70aebbca790")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "tiktoken"))
    request_tokens._encoding.cache_clear()
    yield request_tokens._encoding()
    request_tokens._encoding.cache_clear()
