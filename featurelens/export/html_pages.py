"""The static report's feature pages, read and written a batch of features at a time.

A million-feature report draws a million pages, so a page's cost is what the export costs.
:func:`featurelens.browser.render_feature.feature_page` (the template) draws one page from
row dicts; here a batch's example windows are read as one Arrow table: their token texts
dictionary-encoded (a corpus repeats a vocabulary's worth of tokens, so each distinct token
is escaped once, :func:`featurelens.browser.window_html.lit_window`), their activations one
flat array, their lit tokens and their cut around the peak found for the whole batch at
once. The page itself is the template's markup written as static pieces around each
feature's values: a report has no server, so the parts that change only with one
(search box, special-token toggle, steering form, lazy logit notice) are fixed.
tests/export/test_html_pages.py holds every page to the template's bytes.

The windows are the ones :mod:`featurelens.export.html_windows` keeps, chosen in the
query: the first ``TOP`` top windows, the first window of each quantile among the first
``max_examples`` ranks, the first ``RANDOM`` random ones.
"""

from __future__ import annotations

import math
from typing import Any, Container, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from featurelens.browser.explainer_badge import explainer_badge
from featurelens.browser.links import StaticLinks
from featurelens.browser.logit_tables import logit_table
from featurelens.browser.queries import BrowserData
from featurelens.browser.render_feature import histogram_chart, set_feature_text
from featurelens.browser.special_tokens import special_tokens_of
from featurelens.browser.steering_panel import attach_effects
from featurelens.browser.templating import fmt
from featurelens.browser.window_html import (EMPTY_SECTION, SECTION_END, _shown, example_item, lit_window,
                                             section_head, window_with_special)
from featurelens.export.html_windows import AFTER, BEFORE, RANDOM, TOP

#: Ranks of each kind read, as the live page reads them (``FeatureData`` of ``feature_batch``).
MAX_EXAMPLES = 20

#: The kinds of windows a page shows, in page order.
KINDS = ("top", "quantile", "random")

_EXAMPLES_SQL = (
    "SELECT x.feature, x.kind, x.rank, x.quantile, x.activations, x.max_activation, x.max_position, "
    "s.token_strs, s.document FROM examples x "
    "JOIN sequences s ON s.corpus_id = x.corpus_id AND s.sequence_id = x.sequence_id "
    "WHERE x.dictionary_id = ? AND x.feature BETWEEN ? AND ? AND list_contains(?, x.feature) "
    "AND x.rank < (CASE WHEN x.kind = 'random' THEN ? ELSE ? END) "
    "QUALIFY CASE x.kind "
    "WHEN 'top' THEN row_number() OVER (PARTITION BY x.feature, x.kind ORDER BY x.rank) <= ? "
    "WHEN 'random' THEN row_number() OVER (PARTITION BY x.feature, x.kind ORDER BY x.rank) <= ? "
    "WHEN 'quantile' THEN row_number() OVER (PARTITION BY x.feature, x.kind, x.quantile ORDER BY x.rank) = 1 "
    "ELSE true END "  # other kinds are not drawn, but their maxima set the scale as on the live page
    "ORDER BY x.feature, x.kind, x.rank")


def _text(value: Any) -> str:
    """``value`` as escaped text, as the templates' autoescape writes it."""
    text = str(value)
    if "&" in text or "<" in text or ">" in text or '"' in text or "'" in text:
        return text.replace("&", "&amp;").replace(">", "&gt;").replace("<", "&lt;").replace(
            "'", "&#39;").replace('"', "&#34;")
    return text


class Windows:
    """A batch's example windows as flat arrays: the rows of :data:`_EXAMPLES_SQL`, each
    row's window cut to ``BEFORE + 1 + AFTER`` tokens around its peak by index arithmetic
    (no list is copied), the escaped texts of all its tokens in one list."""

    def __init__(self, table: pa.Table, special: Container[str]) -> None:
        n = table.num_rows
        self.n = n
        self.feature = table.column("feature").to_pylist()
        self.kind = table.column("kind").to_pylist()
        self.rank = table.column("rank").to_pylist()
        self.quantile = table.column("quantile").to_pylist()
        self.max_activation = table.column("max_activation").to_pylist()
        self.document = table.column("document").to_pylist()
        tokens = table.column("token_strs").combine_chunks() if n else pa.array([], pa.list_(pa.string()))
        acts = table.column("activations").combine_chunks() if n else pa.array([], pa.list_(pa.float32()))
        tok_off = tokens.offsets.to_numpy().astype(np.int64)
        act_off = acts.offsets.to_numpy().astype(np.int64)
        n_tok = tok_off[1:] - tok_off[:-1]
        n_act = act_off[1:] - act_off[:-1]
        keep = BEFORE + 1 + AFTER
        peak = np.minimum(np.maximum(table.column("max_position").to_numpy(zero_copy_only=False)
                                     .astype(np.int64), 0), n_tok - 1)
        cut = n_tok > keep
        start = np.where(cut, np.minimum(np.maximum(peak - BEFORE, 0), n_tok - keep), 0)
        end = np.where(cut, start + keep, n_tok)
        self.cut_before = start.tolist()
        self.cut_after = (n_tok - end).tolist()
        self.tok_start = (tok_off[:-1] + start).tolist()
        self.tok_end = (tok_off[:-1] + end).tolist()
        self.act_start = (act_off[:-1] + start).tolist()
        # a window shows as many tokens as it has activations (a short row's tail stays dark)
        shown = np.maximum(np.minimum(end, n_act) - start, 0)
        self.length = np.minimum(end - start, shown).tolist()
        values = tokens.values
        encoded = pc.dictionary_encode(values) if len(values) else None
        distinct = encoded.dictionary.to_pylist() if encoded is not None else []
        self.distinct = distinct
        escaped = np.array([_shown(t) for t in distinct] or [""], dtype=object)
        indices = encoded.indices.to_numpy(zero_copy_only=False) if encoded is not None else np.zeros(0, np.int64)
        self.token_index = indices
        self.texts: list[str] = escaped[indices].tolist() if len(indices) else []
        flat = acts.values.to_numpy(zero_copy_only=False).astype(np.float64) if len(acts.values) \
            else np.zeros(0)
        self.acts: list[float] = flat.tolist()
        self.lit_at = np.flatnonzero(flat > 0)  # NaN is unlit
        self.lit_from = np.searchsorted(self.lit_at, act_off[:-1] + start).tolist()
        self.lit_to = np.searchsorted(self.lit_at, act_off[:-1] + start + np.asarray(self.length, np.int64)).tolist()
        self.has_special = [False] * n
        if distinct and special:
            marked = np.fromiter((t in special for t in distinct), bool, len(distinct))
            if marked.any():
                in_window = np.concatenate([[0], np.cumsum(marked[indices])])
                self.has_special = (in_window[tok_off[:-1] + end] - in_window[tok_off[:-1] + start] > 0).tolist()

    def rows_by_feature(self) -> dict[int, list[int]]:
        """The row numbers of each feature, in query order (kind, then rank)."""
        out: dict[int, list[int]] = {}
        for row, feature in enumerate(self.feature):
            out.setdefault(feature, []).append(row)
        return out

    def html(self, row: int, scale: float, special: Container[str]) -> str:
        """Row ``row``'s window as the page draws it."""
        if self.has_special[row]:
            tokens = [self.distinct[i] for i in self.token_index[self.tok_start[row]:self.tok_end[row]].tolist()]
            acts = self.acts[self.act_start[row]:self.act_start[row] + self.length[row]]
            return window_with_special(tokens, acts, scale, special, False)
        first = self.act_start[row]
        lit = (self.lit_at[self.lit_from[row]:self.lit_to[row]] - first).tolist() if scale > 0 else []
        return lit_window(self.texts, self.tok_start[row], self.length[row], self.acts, first, lit, scale)

    def item(self, row: int, scale: float, special: Container[str]) -> str:
        """Row ``row``'s ``<li>``."""
        kind = self.kind[row]
        fields = {"rank": self.rank[row], "quantile": self.quantile[row], "document": self.document[row],
                  "max_activation": self.max_activation[row], "cut_before": self.cut_before[row],
                  "cut_after": self.cut_after[row]}
        return example_item(kind, fields, self.html(row, scale, special))


class PageWriter:
    """Writes one dictionary's report pages from static pieces (``links`` at the depth of a
    feature page, ``note`` the sentence above the examples)."""

    def __init__(self, data: BrowserData, dictionary_id: str, links: StaticLinks, note: str) -> None:
        self.data = data
        self.did = dictionary_id
        self.links = links
        found = data.query("SELECT * FROM dictionaries WHERE dictionary_id = ?", [dictionary_id])
        self.dictionary = found[0] if found else {}
        self.special = special_tokens_of(data.query, self.dictionary.get("model_id"))
        did = _text(dictionary_id)
        self.head = (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
                     f'content="width=device-width, initial-scale=1"><title>')
        self.frame = (f' · featurelens</title><link rel="stylesheet" href="{_text(links.static("style.css"))}">'
                      f'</head><body><header><a href="{_text(links.home())}">featurelens</a></header><main>'
                      f'<nav class="neighbours">')
        self.home = f'<a href="{_text(links.dictionary(dictionary_id))}">{did}</a>'
        self.did_text = did
        meta_model = _text(self.dictionary.get("model_id") or "")
        self.h1 = f'</nav><h1>{did} <span class="index">#'
        self.meta_model = f'</span></h1><p class="meta">{meta_model} · '
        self.hookpoint = self.dictionary.get("hookpoint")
        self.config = self.dictionary.get("config")
        self.note = (f'<p class="meta export-note">{_text(note)}</p>' if note else "")
        self.tail = "</main></body></html>\n"

    def pages(self, chunk: list[int], neighbours: dict[int, tuple[int | None, int | None]]) -> Iterator[tuple[int, str]]:
        """``(feature, page)`` of the stored features of ``chunk`` (sorted), in order."""
        wanted = sorted({int(f) for f in chunk})
        if not wanted:
            return
        data, did = self.data, self.did
        stats = _column_rows(data.table(
            "SELECT * FROM features WHERE dictionary_id = ? AND feature BETWEEN ? AND ? "
            "AND list_contains(?, feature) ORDER BY feature", [did, wanted[0], wanted[-1], wanted]))
        if not stats:
            return
        windows = Windows(data.table(_EXAMPLES_SQL, [did, wanted[0], wanted[-1], wanted, min(MAX_EXAMPLES, RANDOM),
                                                     MAX_EXAMPLES, TOP, RANDOM]), self.special)
        rows = windows.rows_by_feature()
        explanations: dict[int, list[dict[str, Any]]] = {}
        for e in data.explanations_of(did, wanted):
            explanations.setdefault(int(e["feature"]), []).append(e)
        effects: dict[int, Any] = {}

        class _Holder:
            effects = None

        holders = {int(s["feature"]): _Holder() for s in stats}
        attach_effects(data.query, did, wanted, holders)
        for feature, holder in holders.items():
            if holder.effects is not None:
                effects[feature] = holder.effects
        for s in stats:
            feature = int(s["feature"])
            yield feature, self.page(s, rows.get(feature, []), windows, explanations.get(feature, []),
                                     effects.get(feature), neighbours.get(feature, (None, None)))

    def page(self, s: dict[str, Any], rows: list[int], windows: Windows, explanations: list[dict[str, Any]],
             effects: dict[str, Any] | None, neighbours: tuple[int | None, int | None]) -> str:
        """One feature's page."""
        did, links = self.did, self.links
        index = int(s["feature"])
        prev, next_ = neighbours
        maximum = s["max_activation"]
        scale = maximum if maximum and not math.isnan(maximum) else \
            max((windows.max_activation[r] for r in rows), default=0.0)
        where = set_feature_text(self.config, index) if self.config is not None else None
        parts = [self.head, self.did_text, " #", str(index), self.frame]
        if prev is not None:
            parts.append(f'<a rel="prev" href="{_text(links.feature(did, prev))}">← #{prev}</a>')
        parts.append(self.home)
        if next_ is not None:
            parts.append(f'<a rel="next" href="{_text(links.feature(did, next_))}">#{next_} →</a>')
        parts += [self.h1, str(index), self.meta_model, _text(where or self.hookpoint or ""),
                  '</p><section class="explain"><h2>Explanations</h2>']
        parts.append(_explanations(explanations))
        quantiles = ", ".join(fmt(q) for q in (s.get("quantiles") or [])) or "-"
        parts.append(
            f'</section><div class="panels"><section><h2>Statistics</h2><table class="stats"><tr><th>density</th>'
            f'<td>{_text(fmt(s["density"]))}</td></tr><tr><th>fired on</th><td>{_text(fmt(s["fire_count"]))} of '
            f'{_text(fmt(s["n_tokens"]))} tokens</td></tr><tr><th>max activation</th><td>'
            f'{_text(fmt(s["max_activation"]))}</td></tr><tr><th>mean activation</th><td>'
            f'{_text(fmt(s["mean_activation"]))}</td></tr><tr><th>quantiles</th><td>{_text(quantiles)}</td></tr>'
            f'</table></section><section><h2>Activation histogram</h2>')
        histogram = histogram_chart(s.get("histogram_edges"), s.get("histogram_counts"))
        parts.append(histogram.__html__() if histogram else
                     '<p class="empty">No activation histogram (the feature never fired).</p>')
        parts.append(f'</section><section><h2>Logit effects</h2><div class="logit-pair">'
                     f'{logit_table("promoted", s["top_logits"], s["top_logit_values"], "pos")}'
                     f'{logit_table("suppressed", s["bottom_logits"], s["bottom_logit_values"], "neg")}</div>'
                     f'</section>')
        parts.append(_effects(effects))
        parts.append("</div>")
        parts.append(_STEERING)
        parts.append(self.note)
        by_kind: dict[str, list[int]] = {}
        for r in rows:
            by_kind.setdefault(windows.kind[r], []).append(r)
        special = self.special
        for kind in KINDS:
            kept = by_kind.get(kind)
            if not kept:
                parts.append(EMPTY_SECTION[kind])
                continue
            parts.append(section_head(kind, scale))
            parts.extend(windows.item(r, scale, special) for r in kept)
            parts.append(SECTION_END)
        parts.append(self.tail)
        return "".join(parts)


#: The steering panel of a page without a model (a report's pages never have one).
_STEERING = ('<section class="steering" id="steering"><h2>Steering</h2><p class="empty">No model is loaded, so '
             'this page cannot steer; start <code>featurelens serve --model MODEL</code> to try this feature on '
             'the model.</p></section>')


def _explanations(explanations: list[dict[str, Any]]) -> str:
    """The inside of the explanations section."""
    if not explanations:
        return '<p class="empty">Not explained yet.</p>'
    parts = ['<ul class="explanations">']
    for e in explanations:
        badge = explainer_badge(e.get("explainer"), e.get("llm"))
        shown = (f'<span class="explainer {_text(badge.kind)}" data-explainer="{_text(badge.explainer)}" '
                 f'title="written by the {_text(badge.explainer)} explainer">{_text(badge.text)}</span>'
                 if badge else "")
        parts.append(f'<li class="explanation"><p class="text">{_text(e["text"])}</p><p class="meta">{shown}</p>'
                     f'<ul class="scores">')
        for s in e["scores"]:
            score = s["score"]
            value = (f'<b class="score">{_text("%.3f" % score)}</b>' if score is not None and score == score
                     else f'<i>{_text(s["status"])}</i>')
            failures = f' · {_text(s["n_parse_failures"])} unparsed answers' if s["n_parse_failures"] else ""
            parts.append(f'<li><span class="scorer">{_text(s["scorer"])}</span> ({_text(s["llm"])}): '
                         f'{value}{failures}</li>')
        if not e["scores"]:
            parts.append('<li class="muted">not scored</li>')
        parts.append("</ul></li>")
    parts.append("</ul>")
    return "".join(parts)


def _effects(effects: dict[str, Any] | None) -> str:
    """The ablation effects section."""
    if not effects:
        return ('<section class="effects"><h2>Ablation effects</h2><p class="empty">Not measured; run '
                '<code>featurelens effects --dictionary ID</code> (or extract with --effects).</p></section>')
    get = effects.get
    return (f'<section class="effects"><h2>Ablation effects</h2><p>mean KL <b class="kl">{_text(fmt(get("mean_kl")))}'
            f'</b> nats (max {_text(fmt(get("max_kl")))}) over {_text(fmt(get("n_positions")))} firing positions '
            f'in {_text(fmt(get("n_windows")))} windows</p><div class="logit-pair">'
            f'{logit_table("lost when ablated", get("promoted_tokens"), get("promoted_deltas"), "pos")}'
            f'{logit_table("gained when ablated", get("suppressed_tokens"), get("suppressed_deltas"), "neg")}'
            f'</div></section>')


def _column_rows(table: pa.Table) -> list[dict[str, Any]]:
    """``table``'s rows as dicts, converted column by column."""
    names = table.column_names
    columns = [table.column(name).to_pylist() for name in names]
    return [dict(zip(names, values)) for values in zip(*columns)]
