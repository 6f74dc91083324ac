"""Pages come from Jinja2 templates with autoescaping: no store value can become markup
on any page, and no template opts out of escaping."""

from __future__ import annotations

import re
import urllib.parse
import urllib.request
from importlib import resources
from pathlib import Path

import pytest
from synthetic_store import fill_store, serving

import featurelens
from featurelens.browser.jobs import with_job_banner
from featurelens.browser.links import ServerLinks, StaticLinks
from featurelens.browser.queries import Page, SqlResult
from featurelens.browser.render import (
    dictionary_page,
    index_page,
    not_found_page,
    search_page,
    sql_page,
)
from featurelens.browser.templating import ENV

HOSTILE = '<img src=x onerror="alert(1)">\'&'
#: Modules that write markup without a template, and the test holding each to its macro's bytes.
DIRECT_WRITERS = {"window_html.py": "test_window_html.py", "charts.py": "test_chart_svg.py",
                  "logit_tables.py": "test_logit_tables.py"}
ESCAPED = "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;&#39;&amp;"


def test_every_template_autoescapes_and_none_opts_out() -> None:
    folder = resources.files("featurelens.browser") / "templates"
    names = sorted(f.name for f in folder.iterdir() if f.name.endswith(".html"))
    assert {"base.html", "feature.html", "dictionary.html", "overview.html", "sql.html"} <= set(names)
    for name in names:
        template = ENV.get_template(name)
        assert ENV.autoescape is True or ENV.autoescape(template.filename)
        source = (folder / name).read_text(encoding="utf-8")
        assert "|safe" not in source.replace(" ", "") and "autoescape false" not in source, name
    code = (resources.files("featurelens.browser")).iterdir()
    for module in code:
        if module.name.endswith(".py"):
            text = module.read_text(encoding="utf-8")
            if module.name in DIRECT_WRITERS:
                # The writers of markup outside the templates (drawn on every one of a million
                # report pages), each held to the autoescaped macro's bytes by its test.
                assert "html.escape" not in text and "from markupsafe import Markup, escape" in text
                assert (Path(__file__).parent / DIRECT_WRITERS[module.name]).is_file()
                continue
            assert "Markup(" not in text and "html.escape" not in text, module.name


@pytest.mark.parametrize("links", [ServerLinks(), StaticLinks()])
def test_hostile_values_are_text_on_every_listing_page(links) -> None:
    row = {"dictionary_id": HOSTILE, "model_id": HOSTILE, "hookpoint": HOSTILE, "architecture": HOSTILE,
           "d_sae": 1, "n_features": 1, "n_explained": 1}
    feature = {"feature": 1, "density": 0.5, "max_activation": 1.0, "fire_count": 3, "text": HOSTILE,
               "score": 0.5, "scores": {}}
    pages = [index_page([row], links), dictionary_page(row, Page([feature], 0, False), links),
             not_found_page(HOSTILE, links), sql_page(HOSTILE, SqlResult([HOSTILE], [(HOSTILE,)], False), None, links),
             sql_page(HOSTILE, None, HOSTILE, links),
             search_page(HOSTILE, Page([{**feature, "dictionary_id": HOSTILE, "explainer": HOSTILE, "llm": HOSTILE}],
                                       0, False), links, [{"dictionary_id": HOSTILE, "feature": 1, "token": HOSTILE,
                                                           "max_activation": 1.0}])]
    for page in pages:
        assert "<img" not in page and ESCAPED in page
    banner = with_job_banner(b"<main></main>", [{"kind": HOSTILE, "run_id": HOSTILE, "progress": {}}]).decode()
    assert "<img" not in banner and "&lt;img" in banner


def test_global_search_also_finds_features_by_top_token(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    with featurelens.open_store(path) as store:
        fill_store(store, n_features=12)
        peak = store.sql("SELECT x.feature, s.token_strs[x.max_position + 1] AS token FROM examples x "
                         "JOIN sequences s USING (corpus_id, sequence_id) WHERE x.kind = 'top' AND x.rank = 0 "
                         "AND x.feature = 5").row(0, named=True)
    with serving(path) as base:
        url = f"{base}search?q=" + urllib.parse.quote(peak["token"])
        with urllib.request.urlopen(url, timeout=10) as response:
            body = response.read().decode()
    table = body.split('class="list tokens"')[1]
    assert re.search(r'href="/feature/[^"]+/5"', table)
