"""Seeded feature records with mixed evidence, for checking that a fast per-feature stage
gives exactly what its plain reading gives.

Tokens come from a small vocabulary (so tokens and pairs recur within and across windows,
in several surface forms of one key: ``" Cat"``, ``"cat"``); each feature fires on a few
tokens, some only after a given previous token, with zero, negative and tied activations
mixed in; some windows are silent, some features never fire.
"""

from __future__ import annotations

import random

from featurelens.core.host.protocols import Example, FeatureRecord

VOCAB = [" the", " cat", " Cat", "cat", " sat", "(", " self", "self", " on", " mat", ".", "\n", " ",
         " 42", " über", " 数据", ",", " a"]


def seeded_records(seed: int, n_features: int = 60, seq_len: int = 24) -> list[FeatureRecord]:
    """``n_features`` records with top, quantile and random windows (module doc)."""
    rng = random.Random(seed)
    records = []
    for feature in range(n_features):
        targets = rng.sample(VOCAB, rng.randint(1, 3))
        after = {t: rng.choice(VOCAB) for t in targets if rng.random() < 0.5}
        silent = rng.random() < 0.1
        examples = []
        for kind, count in (("top", rng.randint(0, 14)), ("quantile", rng.randint(0, 12)),
                            ("random", rng.randint(0, 12))):
            for _ in range(count):
                tokens = [rng.choice(VOCAB) for _ in range(rng.randint(1, seq_len))]
                activations = []
                for i, token in enumerate(tokens):
                    fires = (not silent and kind != "random" and token in targets
                             and (token not in after or (i > 0 and tokens[i - 1] == after[token])))
                    noise = rng.random()
                    if fires:
                        activations.append(rng.choice([1.0, 2.5, round(rng.uniform(0.1, 5), 3)]))
                    elif noise < 0.05:
                        activations.append(round(rng.uniform(0.01, 0.5), 3))
                    elif noise < 0.08:
                        activations.append(-0.2)
                    else:
                        activations.append(0.0)
                examples.append(Example(tokens, activations, kind,
                                        rng.randint(0, 4) if kind == "quantile" else None))
        peak = max((max(e.activations) for e in examples), default=0.0)
        records.append(FeatureRecord("seeded", feature, peak, 0.01, examples))
    return records
