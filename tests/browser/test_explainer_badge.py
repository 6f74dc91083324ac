"""The browser marks which explainer wrote each label, and says when no LLM did."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from synthetic_store import serving

import featurelens
from featurelens.browser.explainer_badge import explainer_badge
from featurelens.labelers.explain import ExplainSpec, explain_features
from featurelens.testing.planted_features import planted_records, write_planted_store


def _drawn(explainer, llm) -> str:
    from featurelens.browser.templating import ENV

    macro = ENV.get_template("macros.html").module.badge
    return str(macro(explainer_badge(explainer, llm)))


def test_badge_names_the_explainer_and_escapes():
    assert _drawn("token-lookup", "offline:none").endswith(">token-lookup · no LLM</span>")
    assert 'class="explainer offline"' in _drawn("token-lookup", "offline:none")
    assert "token-activations · local:smollm2" in _drawn("token-activations", "local:smollm2")
    assert "&lt;x&gt;" in _drawn("<x>", "local:m") and "<x>" not in _drawn("<x>", "local:m")
    assert explainer_badge(None, None) is None and _drawn(None, None) == ""


def test_feature_and_dictionary_pages_show_the_badge(tmp_path: Path):
    path = tmp_path / "store.duckdb"
    with featurelens.open_store(path) as store:
        write_planted_store(store, planted_records(n_top=12, n_quantile=8, n_random=8))
        explain_features(store, ExplainSpec("local:smollm2", "token-lookup"))
        store.execute("INSERT INTO explanations (explanation_id, dictionary_id, feature, explainer, llm, text, "
                      "options) VALUES ('x1', 'planted', 1, 'token-activations', 'local:smollm2', "
                      "'cats', '{}')")
    with serving(path) as base:
        with urllib.request.urlopen(base + "feature/planted/1", timeout=10) as response:
            page = response.read().decode()
        with urllib.request.urlopen(base + "dictionary/planted", timeout=10) as response:
            listing = response.read().decode()
    assert "token-lookup · no LLM</span>" in page
    assert "token-activations · local:smollm2</span>" in page
    # Features 0 and 2 have only token lookup's label; feature 1 shows whichever is best.
    assert listing.count('class="explainer offline"') >= 2 and listing.count('class="explainer ') == 3
