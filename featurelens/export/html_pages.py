"""The static report's feature pages, read and written a batch of features at a time.

A million-feature report draws a million pages, so a page's cost is what the export costs.
:func:`featurelens.browser.render_feature.feature_page` (the template) draws one page from
row dicts; here a batch's example rows are read as one Arrow table without their tokens,
their activations as one flat array whose lit positions numpy finds for the whole batch,
and each window is cut around its peak by index arithmetic. Token texts come per stored
sequence (:class:`Sequences`): the examples of many features share a corpus's sequences,
so each is read from the store and escaped once per process, not once per example (a
join of examples with sequences per batch cost DuckDB a hash of every sequence). The page
itself is the template's markup written as static pieces around each feature's escaped
values: a report has no server, so the parts that change only with one (search box,
special-token toggle, steering form, lazy logit notice) are fixed.
tests/export/test_html_pages.py holds every page to the template's bytes.

The windows are the ones :mod:`featurelens.export.html_windows` keeps: the first ``TOP``
top windows, the first window of each quantile among the first ``MAX_EXAMPLES`` ranks, the
first ``RANDOM`` random ones among the first ``RANDOM_SHOWN`` (the live page's reads).
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from typing import Any, Container, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from featurelens.browser.explainer_badge import explainer_badge
from featurelens.browser.links import StaticLinks
from featurelens.browser.logit_tables import logit_table
from featurelens.browser.queries import RANDOM_SHOWN, BrowserData
from featurelens.browser.render_feature import histogram_chart, set_feature_text
from featurelens.browser.special_tokens import special_tokens_of
from featurelens.browser.steering_panel import attach_effects
from featurelens.browser.templating import fmt
from featurelens.browser.window_html import (EMPTY_SECTION, SECTION_END, _SHOWN, _shown, item_head, item_tail,
                                             lit_window, section_head, window_with_special)
from featurelens.core.transcoder_layout import is_set_config
from featurelens.export.html_windows import AFTER, BEFORE, RANDOM, TOP

#: Ranks of each kind read, as the live page reads them (``FeatureData`` of ``feature_batch``).
MAX_EXAMPLES = 20


_EXAMPLES_SQL = (
    "SELECT feature, kind, rank, quantile, activations, max_activation, max_position, corpus_id, sequence_id "
    "FROM examples WHERE dictionary_id = ? AND feature BETWEEN ? AND ? AND list_contains(?, feature) "
    "AND rank < (CASE WHEN kind = 'random' THEN ? ELSE ? END)")  # ordered and chosen in Windows

_SEQUENCES_SQL = (
    "SELECT s.sequence_id, s.token_strs, s.document FROM sequences s "
    "SEMI JOIN (SELECT unnest(?::BIGINT[]) AS id) i ON s.sequence_id = i.id WHERE s.corpus_id = ?")


def _text(value: Any) -> str:
    """``value`` as escaped text, as the templates' autoescape writes it."""
    text = str(value)
    if "&" in text or "<" in text or ">" in text or '"' in text or "'" in text:
        return text.replace("&", "&amp;").replace(">", "&gt;").replace("<", "&lt;").replace(
            "'", "&#39;").replace('"', "&#34;")
    return text


class Sequences:
    """The windows' token texts as pages show them (escaped, :func:`_shown`), one list per
    stored sequence, kept across the batches of a process: the examples of many features
    share a corpus's sequences, so each is read and escaped once, not once per example.
    At most :data:`MOST_TOKENS` tokens are kept (the cache starts over when full); a
    sequence's raw tokens only when it holds special tokens."""

    #: Tokens kept: a list slot each (16 MB), their texts mostly shared through window_html's
    #: table of escaped tokens (about 130 MB more if a vocabulary outgrows that table).
    MOST_TOKENS = 1 << 21

    def __init__(self, data: BrowserData, special: Container[str]) -> None:
        self.data = data
        self.special = special
        self.kept: dict[tuple[str, int], tuple[list[str], list[str] | None, list[int], str]] = {}
        self.tokens = 0
        self._special: dict[str, bool] = {}

    def load(self, keys: list[tuple[str, int]]) -> None:
        """Read the sequences of ``keys`` (corpus, sequence id) not kept yet."""
        wanted = set(keys)
        missing = [k for k in wanted if k not in self.kept]
        if not missing:
            return
        if len(self.kept) and self.tokens > self.MOST_TOKENS:
            self.kept.clear()
            self.tokens = 0
            missing = list(wanted)
        by_corpus: dict[str, list[int]] = {}
        for corpus, sequence in missing:
            by_corpus.setdefault(corpus, []).append(sequence)
        special = self.special
        flags = self._special
        for corpus, ids in by_corpus.items():
            table = self.data.table(_SEQUENCES_SQL, [sorted(ids), corpus])
            for sequence, tokens, document in zip(table.column("sequence_id").to_pylist(),
                                                  table.column("token_strs").to_pylist(),
                                                  table.column("document").to_pylist()):
                texts = list(map(_SHOWN.get, tokens))
                if None in texts:
                    texts = [_shown(t) if x is None else x for t, x in zip(tokens, texts)]
                marked = []
                for i, token in enumerate(tokens):
                    flag = flags.get(token)
                    if flag is None:
                        if len(flags) > 1 << 17:
                            flags.clear()
                        flag = flags[token] = token in special
                    if flag:
                        marked.append(i)
                # the raw tokens only where a window may need them (drawn token by token)
                self.kept[(corpus, sequence)] = (texts, tokens if marked else None, marked, _text(document or ""))
                self.tokens += len(tokens)


#: Where each kind's windows stand on the live page (``FeatureData.examples``), other kinds after.
_SCALE_ORDER = {"top": 0, "quantile": 1, "random": 2}

#: Windows of each kind a page draws (quantile: one per quantile).
_LIMITS = {"top": TOP, "random": RANDOM}


class Windows:
    """A batch's example windows, chosen and cut as the report shows them: the rows of
    :data:`_EXAMPLES_SQL` in page order (feature, kind, rank), the windows a page draws
    (the first ``TOP`` top ones, the first of each quantile, the first ``RANDOM`` random
    ones; rows of other kinds only count for the scale), each cut to ``BEFORE + 1 + AFTER``
    tokens around its peak by index arithmetic on its sequence's texts and on one flat list
    of the batch's activations (no window's list is copied)."""

    def __init__(self, table: pa.Table, sequences: Sequences) -> None:
        n = table.num_rows
        order = pc.sort_indices(table, sort_keys=[("feature", "ascending"), ("kind", "ascending"),
                                                  ("rank", "ascending")]).to_pylist() if n else []
        feature = table.column("feature").to_pylist()
        kind = table.column("kind").to_pylist()
        rank = table.column("rank").to_pylist()
        quantile = table.column("quantile").to_pylist()
        maximum = table.column("max_activation").to_pylist()
        peak = table.column("max_position").to_pylist()
        corpus = table.column("corpus_id").to_pylist()
        sequence = table.column("sequence_id").to_pylist()
        acts = table.column("activations").combine_chunks() if n else pa.array([], pa.list_(pa.float32()))
        act_off = acts.offsets.to_numpy().astype(np.int64)
        flat = acts.values.to_numpy(zero_copy_only=False).astype(np.float64) if len(acts.values) else np.zeros(0)
        self.acts: list[float] = flat.tolist()
        lit_at = np.flatnonzero(flat > 0)  # NaN is unlit
        self.lit: list[int] = lit_at.tolist()
        act_at = act_off.tolist()
        chosen: list[int] = []
        count: dict[tuple[int, str], int] = {}
        seen: set[tuple[int, Any]] = set()
        for r in order:
            k = kind[r]
            if k == "quantile":
                key = (feature[r], quantile[r])
                if key in seen:
                    continue
                seen.add(key)
            elif k in _LIMITS:
                key = (feature[r], k)
                taken = count.get(key, 0)
                if taken >= _LIMITS[k]:
                    continue
                count[key] = taken + 1
            chosen.append(r)
        #: the chosen rows' features (ascending) and maxima, for a page's scale
        self.features = [feature[r] for r in chosen]
        self.maxima = [(_SCALE_ORDER.get(kind[r], 3), kind[r], maximum[r]) for r in chosen]
        drawn = [r for r in chosen if kind[r] in _DRAWN]
        sequences.load([(corpus[r], sequence[r]) for r in drawn])
        get = sequences.kept.__getitem__
        keep = BEFORE + 1 + AFTER
        #: each drawn window: feature, kind, head, texts, token start, tokens shown, first
        #: activation, tokens when it holds special ones (else None), token end, tail
        self.windows: list[tuple[Any, ...]] = []
        starts: list[int] = []
        ends: list[int] = []
        for r in drawn:
            texts, tokens, marked, document = get((corpus[r], sequence[r]))
            n_tok = len(texts)
            start, end = 0, n_tok
            if n_tok > keep:
                top = min(max(int(peak[r] or 0), 0), n_tok - 1)
                start = min(max(0, top - BEFORE), n_tok - keep)
                end = start + keep
            first = act_at[r] + start
            shown = min(end - start, max(min(end, act_at[r + 1] - act_at[r]) - start, 0))
            k, m = kind[r], maximum[r]
            label = f"q{quantile[r]}" if k == "quantile" and quantile[r] is not None else f"#{rank[r]}"
            special = tokens if marked and any(start <= i < end for i in marked) else None
            shown_max = "-" if m is None or m != m else f"{m:.3g}"  # fmt() of a float: digits, a sign, "e", "inf"
            self.windows.append((feature[r], k, item_head(k, str(rank[r]), label, document, shown_max, str(start)),
                                 texts, start, shown, first, special, end, item_tail(str(n_tok - end))))
            starts.append(first)
            ends.append(first + shown)
        self.window_features = [w[0] for w in self.windows]
        self.lit_from = np.searchsorted(lit_at, np.asarray(starts, np.int64)).tolist()
        self.lit_to = np.searchsorted(lit_at, np.asarray(ends, np.int64)).tolist()

    def scale_of(self, feature: int) -> float:
        """The largest maximum of ``feature``'s windows (0 without any), taken in the live
        page's order (top, quantile, random, then other kinds by name; each by rank), since
        ``max`` over a NaN depends on where the NaN stands."""
        rows = self.maxima[bisect_left(self.features, feature):bisect_right(self.features, feature)]
        rows.sort(key=lambda row: row[:2])  # stable: ranks keep their order within a kind
        return max((row[2] for row in rows), default=0.0)

    def of(self, feature: int) -> range:
        """The numbers of ``feature``'s drawn windows."""
        return range(bisect_left(self.window_features, feature), bisect_right(self.window_features, feature))

    def item(self, w: int, scale: float, special: Container[str]) -> str:
        """Window ``w``'s ``<li>``."""
        _, _, head, texts, start, shown, first, tokens, end, tail = self.windows[w]
        if tokens is not None:  # a window holding special tokens: drawn token by token
            html = window_with_special(tokens[start:end], self.acts[first:first + shown], scale, special, False)
        else:
            lit = [at - first for at in self.lit[self.lit_from[w]:self.lit_to[w]]] if scale > 0 else []
            html = lit_window(texts, start, shown, self.acts, first, lit, scale)
        return f"{head}{html}{tail}"


#: The kinds of windows a page draws, in page order.
_DRAWN = ("top", "quantile", "random")


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
        self.sequences = Sequences(data, self.special)
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
        self.transcoder_set = is_set_config(self.config)
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
        windows = Windows(data.table(_EXAMPLES_SQL, [did, wanted[0], wanted[-1], wanted,
                                                     min(MAX_EXAMPLES, RANDOM_SHOWN), MAX_EXAMPLES]), self.sequences)
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
            yield feature, self.page(s, windows, explanations.get(feature, []),
                                     effects.get(feature), neighbours.get(feature, (None, None)))

    def page(self, s: dict[str, Any], windows: Windows, explanations: list[dict[str, Any]],
             effects: dict[str, Any] | None, neighbours: tuple[int | None, int | None]) -> str:
        """One feature's page."""
        did, links = self.did, self.links
        index = int(s["feature"])
        prev, next_ = neighbours
        maximum = s["max_activation"]
        scale = maximum if maximum and not math.isnan(maximum) else \
            windows.scale_of(index)
        where = set_feature_text(self.config, index) if self.transcoder_set else None
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
        for w in windows.of(index):
            by_kind.setdefault(windows.windows[w][1], []).append(w)
        special = self.special
        for kind in _DRAWN:
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
