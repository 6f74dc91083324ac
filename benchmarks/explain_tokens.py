"""o200k input tokens per feature of the explanation prompt: the table format against the compact one.

On planted features (20 seeds x 3 rules; 32-token windows, 10 top + 50 quantile + 50
random, as benchmarks/cost.py builds them) it counts, with o200k, the input tokens per
feature of the token-activations explainer's requests for each candidate: the old
``style=table`` and the compact default, at several windows, example counts and
``features_per_request``. For every row the faithful offline explainer (the rule
reader of :mod:`featurelens.testing.planted_features`, which sees only the prompt) must
recover every planted rule; grouped requests are answered one ``N: ...`` line per
feature and each line goes through the explainer's own parser, as the engine does.
It prints each candidate's tokens per feature, its prefix share, the rules recovered,
and the ratio old / new in one run.

    TIKTOKEN_CACHE_DIR=/tmp/cost_tiktoken .venv/bin/python benchmarks/explain_tokens.py
"""

from __future__ import annotations

import re
import sys

from featurelens.core.host.protocols import FeatureRecord, LLMRequest, LLMResponse
from featurelens.labelers.explain_grouped import grouped_request, split_answer
from featurelens.labelers.explainers import TokenActivationsExplainer
from featurelens.llm.request_tokens import Counter
from featurelens.testing.planted_features import (
    PLANTED,
    explain_from_evidence,
    planted_records,
)

#: (label, explainer options, features per request); the first row is today's default.
CANDIDATES: list[tuple[str, dict[str, object], int]] = [
    ("table 10 x 32 (old default)", {"style": "table", "window": 32, "n_examples": 10}, 1),
    ("table 10 x 32, 4/req", {"style": "table", "window": 32, "n_examples": 10}, 4),
    ("table 6 x 16, 4/req (old cheapest)", {"style": "table", "window": 16, "n_examples": 6}, 4),
    ("compact 10 x 32", {"window": 32, "n_examples": 10}, 1),
    ("compact 10 x 16 (new default)", {}, 1),
    ("compact 10 x 16, 4/req", {}, 4),
    ("compact 6 x 16", {"n_examples": 6}, 1),
    ("compact 6 x 16, 4/req", {"n_examples": 6}, 4),
    ("compact 6 x 16, 8/req", {"n_examples": 6}, 8),
]


def faithful_answer(request: LLMRequest, n: int) -> str:
    """What a faithful explainer answers: one line, or one ``N: ...`` line per feature."""
    turn = request.messages[-1]["content"]
    if n == 1:
        return "Explanation: " + explain_from_evidence(turn)
    blocks = re.split(r"^Feature (\d+):\n", turn, flags=re.M)[1:]
    return "\n".join(f"{number}: {explain_from_evidence(block)}" for number, block in zip(blocks[::2], blocks[1::2]))


def measure(counter: Counter, records: list[FeatureRecord], options: dict[str, object],
            per_request: int) -> tuple[float, float, float, int]:
    """(input tokens per feature, prefix tokens per feature, output tokens per feature, rules recovered)."""
    explainer = TokenActivationsExplainer(**options)  # type: ignore[arg-type]
    right = {index: text for index, (_, text) in enumerate(PLANTED.values())}
    total = prefix = out = 0
    recovered = 0
    for start in range(0, len(records), per_request):
        group = records[start:start + per_request]
        request = grouped_request(explainer, group) if per_request > 1 else explainer.requests(group[0])[0]
        tokens = counter.request(request)
        total, prefix = total + tokens.total, prefix + tokens.prefix
        answer = faithful_answer(request, per_request)
        out += counter.text(answer)
        lines = split_answer(answer, len(group)) if per_request > 1 else {1: answer}
        for number, record in enumerate(group, 1):
            if number in lines:
                label = explainer.parse(record, [LLMResponse(text=lines[number])])
                recovered += label == right[record.feature]
    n = len(records)
    return total / n, prefix / n, out / n, recovered


def main() -> int:
    counter = Counter()
    records = [r for seed in range(20) for r in planted_records(length=32, n_top=10, n_quantile=50,
                                                                n_random=50, seed=seed,
                                                                dictionary_id=f"planted{seed}")]
    print(f"{len(records)} planted features; tokens counted with {counter.name}\n")
    print(f"{'candidate':<36}{'input':>8}{'prefix':>8}{'output':>8}{'rules':>8}{'old/new':>9}")
    baseline = None
    failed = False
    for label, options, per_request in CANDIDATES:
        total, prefix, out, recovered = measure(counter, records, options, per_request)
        baseline = baseline or total
        failed |= recovered != len(records)
        print(f"{label:<36}{total:>8,.0f}{prefix:>8,.0f}{out:>8,.1f}{recovered:>5}/{len(records):<2}"
              f"{baseline / total:>8.2f}x")
    default = TokenActivationsExplainer()
    print(f"\nnew default: style={default.style}, window={default.window}, n_examples={default.n_examples}")
    if failed:
        print("a candidate lost planted rules: the format does not carry what the explainer needs")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
