"""Planted output features and a faithful judge, to check the intervention scorer.

:func:`planted_output_dictionary` builds, for a real (tiny) model, a ReLU dictionary at
the last layer whose feature *i* writes the unembedding direction of one chosen token,
so steering it up makes the model write that token: its right explanation is "the word
'<token>'". :class:`SteeringJudge` is an LLM provider that answers the intervention
scorer's prompt faithfully: in each pair it picks the continuation holding more of the
word the explanation names (ties: the first). A right explanation should then score near
1 and a wrong one near chance; :func:`separation` reports the AUROC over both.

Used by tests/test_interventions_scorer.py and benchmarks/steering.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from featurelens.core.host.protocols import FeatureRecord, LLMRequest, LLMResponse
from featurelens.scorers.embedding import auroc


def planted_tokens(tokenizer: Any, count: int) -> list[str]:
    """``count`` alphabetic vocabulary tokens of 3+ letters, none inside another (any case)."""
    words: list[str] = []
    for token_id in range(len(tokenizer)):
        text = tokenizer.decode([token_id]).strip()
        low = text.lower()
        if len(text) >= 3 and text.isalpha() and not any(low in w.lower() or w.lower() in low for w in words):
            words.append(text)
        if len(words) == count:
            return words
    raise ValueError(f"the tokenizer has fewer than {count} usable word tokens")


def sharpen_unembedding(backend: Any, factor: float = 40.0) -> None:
    """Scale a random model's LM head so its next-token distributions can be peaked.

    A freshly initialised model's logits span a fraction of a nat, so no edit can make
    it write a token often; scaled up, steering shows in the text as it does in a trained
    model. For tests and benchmarks on random models only.
    """
    with torch.no_grad():
        backend.model.get_output_embeddings().weight.mul_(factor)


def sharpen_saved_model(folder: Path, factor: float = 40.0) -> Path:
    """:func:`sharpen_unembedding` applied to a saved random model, written back in place
    (so processes that load the folder, like ``featurelens score``, see the same model)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder)
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(factor)
    model.save_pretrained(folder)
    return folder


def planted_output_dictionary(backend: Any, output: Path, count: int = 4) -> tuple[Path, str, list[str]]:
    """Save a dictionary whose features promote one token each; (path, hookpoint, words)."""
    from featurelens.core.host.manager import create
    from featurelens.core.training.api import save_dictionary

    hookpoint = f"blocks.{backend.n_layers - 1}.hook_resid_post"
    words = planted_tokens(backend.tokenizer, count)
    w_u = backend.unembedding(fold_final_norm=True)  # [d_model, vocab]
    rows = []
    for word in words:
        token_id = next(t for t in range(len(backend.tokenizer))
                        if backend.tokenizer.decode([t]).strip() == word)
        column = w_u[:, token_id] - w_u.mean(dim=1)  # what raises this token over the rest
        rows.append(column / column.norm())
    d_model = w_u.shape[0]
    dictionary = create("dictionary_learner", "relu", d_model, count, hookpoint=hookpoint,
                        model_id=backend.model_id)
    with torch.no_grad():
        dictionary.W_dec.copy_(torch.stack(rows))
        dictionary.W_enc.copy_(torch.stack(rows).T)
        dictionary.b_enc.fill_(-1.0)
        dictionary.b_dec.zero_()
    save_dictionary(dictionary, output)
    return output, hookpoint, words


def _word(explanation: str) -> str | None:
    found = re.search(r"word\s+['\"‘“]?([A-Za-z]+)", explanation)
    return found.group(1) if found else None


class SteeringJudge:
    """Faithful answers to the intervention scorer (module docstring)."""

    name = "judge"

    def __init__(self, model: str = "faithful"):
        self.model = model
        self.capabilities: frozenset[str] = frozenset()
        self.calls = 0

    async def complete(self, request: LLMRequest) -> LLMResponse:
        return self.answer(request)

    def answer(self, request: LLMRequest) -> LLMResponse:
        self.calls += 1
        user = request.messages[-1]["content"]
        found = re.findall(r"Feature explanation: (.*)", user)
        word = _word(found[-1]) if found else None
        choices = []
        for body in re.findall(r"<pair \d+>\n(.*?)\n</pair \d+>", user, re.S):
            first = re.search(r"^1: (.*)$", body, re.M)
            second = re.search(r"^2: (.*)$", body, re.M)
            a = first.group(1).count(word) if first and word else 0
            b = second.group(1).count(word) if second and word else 0
            choices.append(2 if b > a else 1)
        return LLMResponse(text="[" + ", ".join(map(str, choices)) + "]", input_tokens=len(user) // 4)


def separation(scorer: Any, records: list[FeatureRecord], words: list[str],
               judge: SteeringJudge | None = None) -> dict[str, Any]:
    """Scores of right and (rotated) wrong explanations of each planted feature, and the AUROC."""
    judge = judge or SteeringJudge()
    right, wrong = [], []
    for record in records:
        own = f"the word '{words[record.feature]}'"
        other = f"the word '{words[(record.feature + 1) % len(words)]}'"
        for text, bucket in ((own, right), (other, wrong)):
            responses = [judge.answer(r) for r in scorer.requests(record, text)]
            result = scorer.score(record, text, responses)
            bucket.append(result.score if result.score is not None else 0.0)
    return {"right": right, "wrong": wrong, "auroc": auroc(right, wrong),
            "mean_right": sum(right) / len(right), "mean_wrong": sum(wrong) / len(wrong)}
