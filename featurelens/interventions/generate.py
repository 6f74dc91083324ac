"""Baseline and steered continuations of a prompt, and the tokens whose probability moved.

Both runs draw from the same random stream (the seed is set before each), so with
``--seed`` the comparison is reproducible and differences come from the edit alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from featurelens.core.errors import FeaturelensError
from featurelens.interventions.hooks import FeatureEditor
from featurelens.interventions.limits import check_length


@dataclass
class SteerResult:
    """What ``featurelens steer`` shows: continuations and the most changed tokens."""

    prompt: str
    baseline: list[str]
    steered: list[str]
    edits: list[str]
    changed: list[dict[str, Any]] = field(default_factory=list)
    baseline_tokens: int = 0
    steered_tokens: int = 0


def encode_prompt(backend: Any, prompt: str) -> torch.Tensor:
    """``[1, n]`` ids of ``prompt`` (with BOS when the tokenizer adds one)."""
    if not prompt:
        raise FeaturelensError("The prompt is empty; pass some text with --prompt.")
    ids = backend.tokenizer(prompt, return_tensors="pt").input_ids
    if ids.shape[1] == 0:
        raise FeaturelensError("The prompt has no tokens; pass some text with --prompt.")
    return ids.to(backend.device)


def generate_ids(backend: Any, prompt_ids: torch.Tensor, *, max_tokens: int, seed: int,
                 temperature: float = 0.7, top_p: float = 0.95, samples: int = 1,
                 stop_at_eos: bool = False, max_time: float | None = None) -> torch.Tensor:
    """``[samples, n]`` new token ids (greedy when ``temperature`` is 0).

    ``n`` is ``max_tokens`` unless ``stop_at_eos`` lets every row end early at EOS (rows
    that ended are padded, after their EOS, with the pad token), or ``max_time`` seconds
    pass first (generation stops there: a deadline for a server's request)."""
    tokenizer = backend.tokenizer
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids = prompt_ids.expand(samples, -1)
    kwargs: dict[str, Any] = {"max_new_tokens": max_tokens, "pad_token_id": pad,
                              "attention_mask": torch.ones_like(ids)}
    if not stop_at_eos:
        kwargs["min_new_tokens"] = max_tokens
    if max_time is not None:
        kwargs["max_time"] = max_time
    if temperature > 0:
        kwargs.update(do_sample=True, temperature=temperature, top_p=top_p, top_k=0)
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    torch.manual_seed(seed)
    with torch.no_grad():
        out = backend.model.generate(ids, **kwargs)
    return out[:, prompt_ids.shape[1]:]


#: The smallest probability change listed: half the last digit :func:`format_side_by_side`
#: prints, so a listed change never reads ``+0.0000``.
SMALLEST_SHOWN = 0.00005


def most_changed(backend: Any, editor: FeatureEditor, ids: torch.Tensor, start: int,
                 n: int = 10) -> list[dict[str, Any]]:
    """Output tokens whose probability the edit moved most, averaged over the positions
    that predict ``ids[start:]`` (the prompt's last position and the continuation)."""
    with torch.no_grad():
        clean = torch.softmax(backend.run_full(ids).float(), dim=-1)[0, start - 1:-1]
        with editor:
            steered = torch.softmax(backend.run_full(ids).float(), dim=-1)[0, start - 1:-1]
    delta = (steered - clean).mean(dim=0)
    order = [t for t in delta.abs().argsort(descending=True)[:n].tolist()
             if abs(float(delta[t])) >= SMALLEST_SHOWN]
    base_mean, steer_mean = clean.mean(dim=0), steered.mean(dim=0)
    return [{"token": backend.tokenizer.decode([t]), "token_id": t, "p_baseline": float(base_mean[t]),
             "p_steered": float(steer_mean[t]), "delta": float(delta[t])} for t in order]


def steer_compare(backend: Any, dictionary: Any, edits: Any, prompt: str, *, max_tokens: int = 40,
                  seed: int = 0, samples: int = 1, temperature: float = 0.7, positions: str = "all",
                  n_changed: int = 10) -> SteerResult:
    """Generate ``samples`` baseline and steered continuations of ``prompt`` side by side."""
    if max_tokens < 1 or samples < 1:
        raise FeaturelensError("--max-tokens and --samples must be at least 1; raise them.")
    prompt_ids = encode_prompt(backend, prompt)
    check_length(backend, prompt_ids.shape[1], max_tokens)
    editor = FeatureEditor(backend, dictionary, edits, positions=positions)
    baseline = generate_ids(backend, prompt_ids, max_tokens=max_tokens, seed=seed,
                            temperature=temperature, samples=samples)
    with editor:
        steered = generate_ids(backend, prompt_ids, max_tokens=max_tokens, seed=seed,
                               temperature=temperature, samples=samples)
    decode = backend.tokenizer.decode
    full = torch.cat([prompt_ids, baseline[:1]], dim=1)
    changed = most_changed(backend, editor, full, prompt_ids.shape[1], n_changed) if editor.edits else []
    return SteerResult(prompt, [decode(row) for row in baseline.tolist()],
                       [decode(row) for row in steered.tolist()], [e.describe() for e in editor.edits],
                       changed, int(baseline.numel()), int(steered.numel()))


def format_side_by_side(result: SteerResult, width: int = 48) -> str:
    """Two columns per sample, then the most changed tokens, as plain text."""
    import textwrap

    def cell(text: str) -> list[str]:
        shown = text.replace("\n", "↵ ")
        return textwrap.wrap(shown, width) or [""]

    lines = [f"prompt: {result.prompt!r}", f"edits: {', '.join(result.edits) or 'none'}", ""]
    header = f"{'baseline':<{width}} | steered"
    for i, (base, steer) in enumerate(zip(result.baseline, result.steered)):
        lines += [f"sample {i}", header, "-" * (2 * width + 3)]
        left, right = cell(base), cell(steer)
        for j in range(max(len(left), len(right))):
            a = left[j] if j < len(left) else ""
            b = right[j] if j < len(right) else ""
            lines.append(f"{a:<{width}} | {b}")
        lines.append("")
    if result.edits and not result.changed:
        same = result.baseline == result.steered
        lines.append("no change: the edits moved no next-token probability by 0.0001 or more"
                     + (" and every steered continuation equals its baseline." if same
                        else "; the continuations differ through smaller changes."))
    if result.changed:
        lines.append("most changed next-token probabilities (mean over the baseline continuation):")
        for row in result.changed:
            token = row["token"].replace("\n", "↵")
            lines.append(f"  {token!r:<20} {row['p_baseline']:.4f} -> {row['p_steered']:.4f} "
                         f"({row['delta']:+.4f})")
    return "\n".join(lines)
