"""Special tokens (BOS, chat markers) are not shown as text in examples unless asked;
extraction records the model's special tokens so the browser knows them exactly."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import pytest
from synthetic_store import fill_store, serving

import featurelens
from featurelens.browser.special_tokens import SpecialTokens

DID = "smollm2-l6-topk"
MARK = "<|im_start|>"


def _store(path: Path, recorded: list[str] | None) -> Path:
    with featurelens.open_store(path) as store:
        info = fill_store(store, n_features=8)
        # every window starts with the chat marker, like SmolLM2-Instruct's BOS
        store.execute("UPDATE sequences SET token_strs = list_concat([?], token_strs[2:])", [MARK])
        config = {"dtype": "float32"} | ({"special_tokens": recorded} if recorded is not None else {})
        store.execute("UPDATE models SET config = ? WHERE model_id = ?", [json.dumps(config), info.model_id])
    return path


def _page(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def _windows(body: str) -> list[str]:
    return re.findall(r'<span class="window">(.*?)</span></li>', body)


@pytest.mark.parametrize("recorded", [[MARK, "<|endoftext|>"], None])
def test_hidden_unless_asked(tmp_path: Path, recorded: list[str] | None) -> None:
    path = _store(tmp_path / "s.duckdb", recorded)
    with serving(path) as base:
        hidden = _page(f"{base}feature/{DID}/1")
        shown = _page(f"{base}feature/{DID}/1?special=1")
    escaped = "&lt;|im_start|&gt;"
    assert _windows(hidden) and all(escaped not in w for w in _windows(hidden))
    assert 'href="/feature/smollm2-l6-topk/1?special=1"' in hidden
    assert all(w.startswith(f'<span class="tok special" title="special token">{escaped}</span>')
               for w in _windows(shown))
    assert "hide special tokens" in shown
    # ordinary tokens that look like markup are still shown (escaped), never taken for special
    ordinary = [re.sub(r'<span class="tok special"[^>]*>[^<]*</span>', "", w) for w in _windows(shown)]
    assert ordinary == _windows(hidden)


def test_recorded_list_wins_over_the_pattern() -> None:
    recorded = SpecialTokens(frozenset({"<s>"}))
    assert "<s>" in recorded and MARK not in recorded
    guessed = SpecialTokens(None)
    assert MARK in guessed and "<|endoftext|>" in guessed and "</s>" in guessed
    assert "<script>" not in guessed and " <|" not in guessed and "|>" not in guessed


def test_extraction_records_the_models_special_tokens(tiny_backend, tmp_path: Path, one_thread) -> None:
    from extract_calls import extract_with

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("def f(x):\n    return x + 1\n" * 40, encoding="utf-8")
    store = tmp_path / "s.duckdb"
    extract_with(hookpoint="blocks.1.hook_resid_post", corpus=str(corpus), tokens=128, store=store,
            context=16, batch_size=4, top_k=2, n_quantile=2, quantile_bins_count=2, n_random=2,
            progress=False, model_obj=tiny_backend)
    with featurelens.open_store(store, read_only=True) as s:
        config = json.loads(s.sql("SELECT CAST(config AS VARCHAR) AS c FROM models")["c"][0])
    assert config["special_tokens"] == sorted(tiny_backend.tokenizer.all_special_tokens)
    assert config["special_tokens"]
