"""The browser's intervention parts: measured ablation effects and the steering panel.

The feature page shows the ``feature_effects`` row beside the decoder-direction logit
effects, and a steering form. The form only works in ``featurelens serve --model ...``
(the model runs in the serve process when the user asks); elsewhere — plain ``serve``,
HTML exports — the panel says so instead of offering a form that cannot work.
"""

from __future__ import annotations

from typing import Any, Callable
from urllib.parse import quote

from featurelens.browser.render import esc, fmt, layout


def attach_effects(query: Callable[[str, list[Any]], list[dict[str, Any]]], dictionary_id: str,
                   features: list[int], out: dict[int, Any]) -> None:
    """Set ``effects`` on each :class:`FeatureData` in ``out`` from ``feature_effects``.

    A store written before the table existed (opened read-only, so not migrated) has none.
    """
    exists = query("SELECT count(*) AS n FROM duckdb_tables() WHERE table_name = 'feature_effects'", [])
    if not exists or not exists[0]["n"]:
        return
    for row in query("SELECT * FROM feature_effects WHERE dictionary_id = ? AND list_contains(?, feature)",
                     [dictionary_id, features]):
        target = out.get(int(row["feature"]))
        if target is not None:
            target.effects = row


def _token_rows(tokens: list[str] | None, values: list[float] | None) -> str:
    return "".join(f'<tr><td><code>{esc(str(t).replace(chr(10), "↵"))}</code></td>'
                   f'<td class="num">{fmt(v)}</td></tr>' for t, v in zip(tokens or [], values or []))


def effects_section(effects: dict[str, Any] | None) -> str:
    """The measured ablation effect of the feature, or how to measure it."""
    if not effects:
        return ('<section class="effects"><h2>Ablation effects</h2><p class="empty">Not measured; run '
                '<code>featurelens effects --dictionary ID</code> (or extract with --effects).</p></section>')
    return (
        '<section class="effects"><h2>Ablation effects</h2>'
        f'<p>mean KL <b class="kl">{fmt(effects.get("mean_kl"))}</b> nats (max {fmt(effects.get("max_kl"))}) '
        f'over {fmt(effects.get("n_positions"))} firing positions in {fmt(effects.get("n_windows"))} windows</p>'
        '<div class="logit-pair">'
        f'<div class="logits pos"><h3>lost when ablated</h3><table>'
        f'{_token_rows(effects.get("promoted_tokens"), effects.get("promoted_deltas"))}</table></div>'
        f'<div class="logits neg"><h3>gained when ablated</h3><table>'
        f'{_token_rows(effects.get("suppressed_tokens"), effects.get("suppressed_deltas"))}</table></div>'
        '</div></section>')


def steer_url(dictionary_id: str, feature: int) -> str:
    return f"/steer/{quote(dictionary_id, safe='')}/{feature}"


def steering_panel(dictionary_id: str, feature: int, links: Any) -> str:
    """A form that asks the serve process's model for baseline and steered text."""
    model = getattr(links, "steering_model", None)
    if not getattr(links, "live", False) or not model:
        return ('<section class="steering" id="steering"><h2>Steering</h2><p class="empty">No model is '
                'loaded, so this page cannot steer; start <code>featurelens serve --model MODEL</code> '
                'to try this feature on the model.</p></section>')
    return (
        '<section class="steering" id="steering"><h2>Steering</h2>'
        f'<form method="get" action="{esc(steer_url(dictionary_id, feature))}">'
        '<label>prompt <input type="text" name="prompt" value="I think" required></label> '
        '<label>strength <input type="text" name="strength" value="8" size="6"></label> '
        '<label>mode <select name="mode"><option>add</option><option>clamp</option>'
        '<option>ablate</option></select></label> '
        '<label>tokens <input type="number" name="tokens" value="30" min="1" max="200"></label> '
        '<label>seed <input type="number" name="seed" value="0"></label> '
        f'<button type="submit">Steer</button></form><p class="meta">model: {esc(model)}</p></section>')


def steer_result_page(dictionary_id: str, feature: int, links: Any, *, result: Any = None,
                      error: str | None = None) -> str:
    """Baseline and steered text side by side (or the reason there is none)."""
    back = f'<p><a href="{esc(links.feature(dictionary_id, feature))}">← feature #{feature}</a></p>'
    if error is not None:
        body = f'{back}<h1>Steering {esc(dictionary_id)} #{feature}</h1><p class="error">{esc(error)}</p>'
        return layout("Steering", body, links)
    rows = "".join(
        f'<tr><td class="baseline">{esc(b)}</td><td class="steered">{esc(s)}</td></tr>'
        for b, s in zip(result.baseline, result.steered))
    changed = "".join(
        f'<tr><td><code>{esc(c["token"].replace(chr(10), "↵"))}</code></td><td class="num">'
        f'{fmt(c["p_baseline"])}</td><td class="num">{fmt(c["p_steered"])}</td></tr>' for c in result.changed)
    body = (f'{back}<h1>Steering {esc(dictionary_id)} #{feature}</h1>'
            f'<p class="meta">prompt: <code>{esc(result.prompt)}</code> · edits: {esc(", ".join(result.edits))}</p>'
            f'<table class="steer"><tr><th>baseline</th><th>steered</th></tr>{rows}</table>'
            f'<h2>Most changed tokens</h2><table class="changed"><tr><th>token</th><th>p baseline</th>'
            f'<th>p steered</th></tr>{changed}</table>')
    return layout("Steering", body, links)
