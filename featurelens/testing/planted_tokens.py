"""Token-planted features: each fires on one known token, or on a token only after another.

:mod:`.planted_features` plants three rules (digits, one word, closing brackets); a
token-level explainer needs many more, with the hard case too: a token that also
appears without firing, because what fires is the token *after a given one*
(``" self"`` after ``"("``). Each record here says what it planted, so a test or a
benchmark can check that a label names it. Activations are noisy, and a little mass
lands on unrelated tokens, as in real dictionaries.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from featurelens.core.host.protocols import Example, FeatureRecord

VOCABULARY = [
    " the", " a", " of", " to", " and", " in", " is", " it", " that", " for", " on", " with",
    " self", " return", " def", " import", " if", " else", " None", " True", " data", " value",
    " file", " path", " name", " list", " error", " user", " time", " model", " cat", " dog",
    " house", " river", " music", " paper", " green", " quickly", " never", " because",
    "(", ")", "[", "]", ":", ",", ".", "=", "\n", " #", "_", "'", '"', " +", " -", " 0", " 1", " 2024",
]


@dataclass
class PlantedToken:
    """A record and what was planted in it: ``token``, and ``previous`` for pair features."""

    record: FeatureRecord
    token: str
    previous: str | None = None


def token_planted(n_features: int = 60, seed: int = 0, length: int = 32, n_top: int = 20,
                  n_quantile: int = 40, n_random: int = 40, pair_every: int = 3,
                  dictionary_id: str = "planted-tokens") -> list[PlantedToken]:
    """``n_features`` planted features; every ``pair_every``-th fires only after a given token."""
    rng = random.Random(seed)
    planted = []
    for index in range(n_features):
        token = rng.choice(VOCABULARY)
        previous = None
        if pair_every and index % pair_every == pair_every - 1:
            previous = rng.choice([t for t in VOCABULARY if t != token])
        planted.append(PlantedToken(_record(rng, index, token, previous, length, n_top, n_quantile,
                                            n_random, dictionary_id), token, previous))
    return planted


def _fires(tokens: list[str], i: int, token: str, previous: str | None) -> bool:
    return tokens[i] == token and (previous is None or (i > 0 and tokens[i - 1] == previous))


def _window(rng: random.Random, length: int, token: str, previous: str | None, activating: bool) -> list[str]:
    tokens = [rng.choice(VOCABULARY) for _ in range(length)]
    if previous is not None:  # the token also turns up where it must not fire
        for _ in range(2):
            i = rng.randrange(1, length)
            if tokens[i - 1] != previous:
                tokens[i] = token
    if activating:
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(1, length)
            tokens[i] = token
            if previous is not None:
                tokens[i - 1] = previous
    else:
        for i in range(length):
            if _fires(tokens, i, token, previous):
                tokens[i] = rng.choice([t for t in VOCABULARY if t != token])
    return tokens


def _record(rng: random.Random, index: int, token: str, previous: str | None, length: int, n_top: int,
            n_quantile: int, n_random: int, dictionary_id: str) -> FeatureRecord:
    activating = []
    while len(activating) < n_top + n_quantile:
        tokens = _window(rng, length, token, previous, True)
        acts = [round(rng.uniform(2.0, 8.0), 3) if _fires(tokens, i, token, previous)
                else (round(rng.uniform(0.05, 0.6), 3) if rng.random() < 0.03 else 0.0)
                for i in range(length)]
        if any(_fires(tokens, i, token, previous) for i in range(length)):
            activating.append(Example(tokens, acts, "quantile"))
    activating.sort(key=lambda e: -e.max_activation)
    top = [Example(e.tokens, e.activations, "top") for e in activating[:n_top]]
    rest = activating[n_top:]
    per_bin = max(1, len(rest) // 4)
    quantile = [Example(e.tokens, e.activations, "quantile", min(3, 3 - i // per_bin))
                for i, e in enumerate(rest)]
    randoms = [Example(_window(rng, length, token, previous, False), [0.0] * length, "random")
               for _ in range(n_random)]
    peak = max(e.max_activation for e in top)
    return FeatureRecord(dictionary_id, index, peak, 0.02, top + quantile + randoms)
