"""Input and output tokens per feature for each explainer and scorer, against delphi.

Counts with the SmolLM2 tokenizer (the embedded model's; tiktoken's o200k, which the
delphi figures in ANCHORS.md use, needs a download this machine cannot make) over a
planted feature with delphi's test-set shape: 32-token windows, 10 top windows for the
explainer, 50 activating + 50 random windows for every scorer. Output tokens are those
of a faithful answer (the rule simulator's), i.e. what a correct model must write.
"Uncached" input leaves out every request's shared prefix (instructions and few-shot,
identical across features), which a provider with prompt caching bills at its cached
rate after the first request.

    .venv/bin/python benchmarks/tokens_per_feature.py
"""

from __future__ import annotations

import asyncio
import sys

from featurelens.core.host.protocols import LLMRequest
from featurelens.core.model.embedded import embedded_model_path
from featurelens.labelers.explainers import (
    HighlightedExplainer,
    TokenActivationsExplainer,
)
from featurelens.scorers import DetectionScorer, FuzzingScorer, SimulationScorer
from featurelens.testing.planted_features import PLANTED, RuleSimulator, planted_records

#: delphi's costs for one feature with its defaults (o200k tokens; ANCHORS.md).
DELPHI = {"explainer": 2477, "detection": 15623, "fuzzing": 18323, "simulation": 97903}
CAPS = {"prompt-logprobs": frozenset({"prompt_logprobs"}), "output-logprobs": frozenset({"output_logprobs"}),
        "json": frozenset()}


def main() -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(embedded_model_path())

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False).input_ids)

    def request_tokens(request: LLMRequest) -> tuple[int, int]:
        """(all input tokens, tokens of the shared prefix)."""
        if request.prompt is not None:
            # the prompt's text up to the target explanation is identical across features
            head = request.prompt.split("Feature explanation:")
            prefix = "Feature explanation:".join(head[:2]) if len(head) > 2 else ""
            return count(request.prompt), count(prefix)
        total = sum(count(m["content"]) for m in request.messages)
        prefix = sum(count(m["content"]) for m in request.messages[:request.shared_prefix])
        return total, prefix

    record = planted_records(length=32, n_top=10, n_quantile=50, n_random=50, seed=3)[0]
    explanation = PLANTED["digits"][1]
    rows: list[tuple[str, int, int, int, int]] = []

    def measure(label: str, requests: list[LLMRequest], caps: frozenset[str]) -> None:
        simulator = RuleSimulator(capabilities=caps)
        total = fresh = out = 0
        for request in requests:
            n_in, n_prefix = request_tokens(request)
            total += n_in
            fresh += n_in - n_prefix
            response = asyncio.run(simulator.complete(request))
            out += count(response.text) if request.max_tokens else 0
        rows.append((label, len(requests), total, fresh, out))

    for explainer in (TokenActivationsExplainer(), TokenActivationsExplainer(style="table"), HighlightedExplainer(),
                      HighlightedExplainer(activation_list=True)):
        requests = explainer.requests(record)
        for request in requests:
            request.purpose = "explain"
        name = explainer.name + (" +activations" if getattr(explainer, "activation_list", False) else "")
        name += " table" if getattr(explainer, "style", None) == "table" else ""
        measure(f"explain {name}", requests, frozenset())
    for mode, caps in CAPS.items():
        measure(f"simulation {mode}", SimulationScorer().requests(record, explanation, caps), caps)
    for scorer in (DetectionScorer(), FuzzingScorer()):
        measure(scorer.name, scorer.requests(record, explanation), frozenset())

    print(f"{'stage':<34}{'calls':>6}{'input':>9}{'uncached':>10}{'output':>8}{'delphi in':>11}{'ratio':>7}")
    by = {}
    for label, calls, total, fresh, out in rows:
        key = "explainer" if label.startswith("explain") else label.split()[0]
        delphi = DELPHI[key]
        by[label] = total
        print(f"{label:<34}{calls:>6}{total:>9,}{fresh:>10,}{out:>8,}{delphi:>11,}{delphi / total:>6.1f}x")
    ours = by["explain token-activations"] + by["simulation prompt-logprobs"]
    theirs = DELPHI["explainer"] + DELPHI["simulation"]
    print(f"\nexplanation + simulation over 100 windows (token-activations + prompt-logprobs): "
          f"{ours:,} input tokens; delphi {theirs:,}; delphi/ours = {theirs / ours:.1f}x; "
          f"target <= 20,000: {'met' if ours <= 20000 else 'NOT met'}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
