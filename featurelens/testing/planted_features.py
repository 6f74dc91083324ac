"""Planted features of known meaning and a faithful rule-based simulator, to check scorers.

A scorer is only trustworthy if it gives a right explanation a high score and a wrong
one a low score when the simulator is faithful. This module makes both halves:

- :func:`planted_records` builds feature records whose activations follow a known rule
  (fires on digits, on one given word, on closing brackets), with top, quantile and
  random windows, and :func:`write_planted_store` writes them into a real store the
  way extraction does (sequences, features, examples);
- :class:`RuleSimulator` is an :class:`~featurelens.core.host.protocols.LLMProvider` that
  reads the explanation in a scorer's prompt, turns a few phrasings ("digits", "the
  word 'cat'", "closing brackets") into a token rule, and answers every mode the
  scorers use: prompt log-probabilities, lines of integers with output log-probs,
  JSON, and 0/1 lists for detection and fuzzing.

Used by the scorer tests and by ``benchmarks/scorer_validation.py``.
"""

from __future__ import annotations

import json
import math
import random
import re
from typing import Callable

import polars as pl

from featurelens.core.host.protocols import (
    Example,
    FeatureRecord,
    LLMRequest,
    LLMResponse,
    TokenLogprobs,
)
from featurelens.core.store.database import Store
from featurelens.scorers.simulation_lines import PLACEHOLDERS

Rule = Callable[[str], bool]

FILLER = [" the", " a", " sat", " on", " mat", " dog", " ran", " and", " of", " to", " in",
          " is", " it", " was", ",", ".", " (", " [", " {", " hello", " world", " red", " blue"]
DIGITS = [" 1", " 7", "42", " 9", "3", " 2024", "0"]
CLOSERS = [")", "]", "}", ")."]
WORD = " cat"

#: Planted features: name -> (rule on a token, the right explanation).
PLANTED: dict[str, tuple[Rule, str]] = {
    "digits": (lambda t: any(c.isdigit() for c in t), "digits and numbers"),
    "word": (lambda t: t.strip().lower() == WORD.strip(), f"the word '{WORD.strip()}'"),
    "closing": (lambda t: t.strip(" .") in (")", "]", "}"), "closing brackets"),
}


def rule_from_explanation(explanation: str) -> Rule | None:
    """The token rule a phrasing describes, or None if the phrasing is not understood."""
    text = explanation.lower()
    quoted = re.search(r"word\s+['\"‘“]?([a-z]+)", text)
    if "closing" in text and ("bracket" in text or "parenthes" in text):
        return PLANTED["closing"][0]
    if "digit" in text or "number" in text:
        return PLANTED["digits"][0]
    if quoted:
        word = quoted.group(1)
        return lambda t: t.strip().lower() == word
    return None


def _window(rng: random.Random, length: int, rule: Rule, pool: list[str], rate: float) -> list[str]:
    tokens = []
    for _ in range(length):
        if rng.random() < rate:
            tokens.append(rng.choice(pool))
        else:
            token = rng.choice(FILLER + DIGITS[:2] + CLOSERS[:1] + [WORD])
            tokens.append(token)
    return tokens


def planted_records(length: int = 24, n_top: int = 20, n_quantile: int = 40, n_random: int = 40,
                    seed: int = 0, dictionary_id: str = "planted") -> list[FeatureRecord]:
    """One record per planted feature (feature index = order in :data:`PLANTED`)."""
    rng = random.Random(seed)
    pools = {"digits": DIGITS, "word": [WORD], "closing": CLOSERS}
    records = []
    for index, (name, (rule, _)) in enumerate(PLANTED.items()):
        activating: list[Example] = []
        while len(activating) < n_top + n_quantile:
            tokens = _window(rng, length, rule, pools[name], 0.15)
            acts = [round(rng.uniform(1.0, 8.0), 3) if rule(t) else 0.0 for t in tokens]
            if max(acts) > 0:
                activating.append(Example(tokens, acts, "quantile"))
        activating.sort(key=lambda e: -e.max_activation)
        top = [Example(e.tokens, e.activations, "top") for e in activating[:n_top]]
        rest = activating[n_top:]
        per_bin = max(1, len(rest) // 4)
        quantile = [Example(e.tokens, e.activations, "quantile", min(3, 3 - i // per_bin))
                    for i, e in enumerate(rest)]
        randoms = []
        while len(randoms) < n_random:
            tokens = [t for t in _window(rng, 3 * length, rule, FILLER, 0.0) if not rule(t)][:length]
            randoms.append(Example(tokens, [0.0] * length, "random"))
        peak = max(e.max_activation for e in top)
        records.append(FeatureRecord(dictionary_id, index, peak, 0.05, top + quantile + randoms))
    return records


def write_planted_store(store: Store, records: list[FeatureRecord], *, corpus_id: str = "planted-corpus",
                        model_id: str = "planted-model") -> None:
    """Write ``records`` as an extraction would: model, dictionary, sequences, features, examples."""
    sequences, examples, features = [], [], []
    for record in records:
        ranks: dict[str, int] = {}
        for example in record.examples:
            sequence_id = len(sequences)
            sequences.append({"corpus_id": corpus_id, "sequence_id": sequence_id, "model_id": model_id,
                              "tokens": list(range(len(example.tokens))), "token_strs": example.tokens,
                              "document": f"planted#{sequence_id}"})
            rank = ranks.get(example.kind, 0)
            ranks[example.kind] = rank + 1
            peak = max(range(len(example.activations)), key=lambda i: example.activations[i])
            examples.append({"dictionary_id": record.dictionary_id, "feature": record.feature,
                             "kind": example.kind, "rank": rank, "corpus_id": corpus_id,
                             "sequence_id": sequence_id, "activations": example.activations,
                             "max_activation": example.max_activation, "max_position": peak,
                             "quantile": example.quantile})
        n_tokens = sum(len(e.tokens) for e in record.examples)
        fired = sum(1 for e in record.examples for a in e.activations if a > 0)
        features.append({"dictionary_id": record.dictionary_id, "feature": record.feature,
                         "corpus_id": corpus_id, "n_tokens": n_tokens, "fire_count": fired,
                         "density": fired / n_tokens, "max_activation": record.max_activation})
    dictionary_ids = sorted({r.dictionary_id for r in records})
    with store.transaction():
        store.insert("models", pl.DataFrame([{"model_id": model_id, "backend": "synthetic",
                                              "source": "planted"}]), on_conflict="ignore")
        store.insert("dictionaries", pl.DataFrame([
            {"dictionary_id": d, "model_id": model_id, "hookpoint": "blocks.0.hook_resid_post",
             "architecture": "planted", "d_in": 1, "d_sae": len(records)} for d in dictionary_ids]),
            on_conflict="ignore")
        store.insert("sequences", pl.DataFrame(sequences), on_conflict="ignore")
        store.insert("features", pl.DataFrame(features), on_conflict="ignore")
        # examples have no key (unique by construction): features already written keep theirs
        held = {(d, f) for d, f in store.execute("SELECT DISTINCT dictionary_id, feature FROM examples")}
        fresh = [row for row in examples if (row["dictionary_id"], row["feature"]) not in held]
        if fresh:
            store.insert("examples", pl.DataFrame(fresh, schema_overrides={"quantile": pl.Int32}))


def _parts(text: str) -> list[str]:
    """Words and single symbols, each with its leading space: a rough tokenizer."""
    return re.findall(r"\s?\w+|\s?[^\w\s]", text)


def explain_from_evidence(turn: str) -> str:
    """What a faithful explainer would say about an explainer prompt's strongest tokens."""
    strong = [line.split("\t")[0] for line in turn.splitlines()
              if "\t" in line and line.split("\t")[1].isdigit() and int(line.split("\t")[1]) >= 5]
    strong += re.findall(r"<<(.*?)>>", turn.split("<examples>")[-1])
    strong = [t for t in strong if t.strip()]
    for name in ("digits", "closing"):
        rule, text = PLANTED[name]
        if strong and all(any(rule(p) for p in _parts(t)) for t in strong):
            return text
    words = [t.strip().lower() for t in strong if t.strip().isalpha()]
    if words:
        return f"the word '{max(set(words), key=words.count)}'"
    return "nothing recognisable"


class RuleSimulator:
    """A faithful simulator: predicts exactly what the explanation's rule says (module doc)."""

    name = "rule"

    def __init__(self, model: str = "keywords", capabilities: frozenset[str] = frozenset({"prompt_logprobs"})):
        self.model = model
        self.capabilities = capabilities
        self.calls = 0

    @staticmethod
    def _explanation(text: str) -> str:
        found = re.findall(r"Feature explanation: (.*)", text)
        return found[-1] if found else ""

    async def complete(self, request: LLMRequest) -> LLMResponse:
        return self.answer(request)

    def answer(self, request: LLMRequest) -> LLMResponse:
        """The faithful answer to ``request`` (synchronous, for HTTP-level fakes too)."""
        self.calls += 1
        if request.prompt is not None:
            return self._prompt_logprobs(request.prompt)
        last = request.messages[-1]["content"]
        if request.purpose == "explain":
            return LLMResponse(text="Explanation: " + explain_from_evidence(last))
        rule = rule_from_explanation(self._explanation(last)) or (lambda t: False)
        examples = re.findall(r"<example (\d+)>(?: \(\d+ tokens\))?\n?(.*?)</example \1>", last, re.S)
        if "<<" in request.messages[0]["content"] or "list of 0s and 1s" in request.messages[0]["content"]:
            return LLMResponse(text=self._classify(request.messages[0]["content"], examples, rule))
        windows = [[line for line in body.split("\n")[:-1]] for _, body in examples]
        if request.json_output:
            data = {str(i): [10 if rule(t) else 0 for t in w] for i, w in enumerate(windows, 1)}
            return LLMResponse(text=json.dumps(data))
        pieces: list[TokenLogprobs] = []
        for i, window in enumerate(windows, 1):
            pieces.append(TokenLogprobs(f"{i}:", 0.0))
            for token in window:
                hit = rule(token)
                top = {"10": math.log(0.9), "0": math.log(0.1)} if hit else {"0": math.log(0.98), "10": math.log(0.02)}
                pieces.append(TokenLogprobs(" " + ("10" if hit else "0"), 0.0, {" " + k: v for k, v in top.items()}))
            pieces.append(TokenLogprobs("\n", 0.0))
        return LLMResponse(text="".join(p.token for p in pieces), output_logprobs=pieces)

    def _classify(self, system: str, examples: list[tuple[str, str]], rule: Rule) -> str:
        fuzzing = "marked" in system
        parts = _parts
        answers = []
        for _, body in examples:
            if fuzzing:
                marked = re.findall(r"<<(.*?)>>", body)
                answers.append(int(bool(marked) and all(any(rule(p) for p in parts(m)) for m in marked)))
            else:
                answers.append(int(any(rule(p) for p in parts(body))))
        return "[" + ",".join(map(str, answers)) + "]"

    def _prompt_logprobs(self, prompt: str) -> LLMResponse:
        rule = rule_from_explanation(self._explanation(prompt)) or (lambda t: False)
        pieces: list[TokenLogprobs] = []
        for line in prompt.split("\n"):
            token, tab, value = line.partition("\t")
            if tab and value in PLACEHOLDERS:
                hit = rule(token)
                top = {"10": math.log(0.9), "0": math.log(0.1)} if hit else {"0": math.log(0.98), "1": math.log(0.02)}
                pieces += [TokenLogprobs(token, None), TokenLogprobs("\t", None), TokenLogprobs(value, -5.0, top)]
            else:
                pieces.append(TokenLogprobs(line, None))
            pieces.append(TokenLogprobs("\n", None))
        return LLMResponse(text="", input_tokens=len(pieces), prompt_logprobs=pieces[:-1])
