"""Explainer defaults that depend on who answers: several features a request for API models.

Every explanation request repeats the explainer's instructions and few-shot turns (the
compact prompt's ~180 tokens), a third of what explaining a feature costs. Hosted
models read several features in one request without trouble, and that pays the prefix
once for several (:mod:`featurelens.labelers.explain_grouped`); a 135M local model
cannot keep them apart. How many a request carries is the provider's declaration
(``ProviderInfo.features_per_request``: 4 for the hosted built-ins, 1 by default).
The default applies only where grouping fits: an explainer that sends one chat
request per feature (the built-in ones, ``groups_features = True``), without
``reasoning`` (its answer is several lines), and when the answers fit the output a
request may ask for.

``explain``, ``label``, ``run`` and ``estimate`` resolve the same default here, so an
estimate prices the requests a run sends. An explicit ``features_per_request`` always
wins; the resolved value is written into the spec's options, so it is recorded with
every explanation and a rerun finds the same ids. Grouped default requests also show 6
top windows a feature instead of 10 (``GROUPED_EXAMPLES``) unless ``n_examples`` is given.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

from featurelens.core.host.protocols import Explainer, ExplainerBase, declared, needs_llm
from featurelens.labelers import explain_grouped as grouped
from featurelens.llm.stage import LLMChoice

#: Top-activating windows a feature shows in a grouped default request (the explainer's own
#: default is 10). OpenAI's explainer showed a hosted model 5 top-activating windows; 6 of
#: 16 tokens cost about 130 o200k tokens a feature less than 10 (benchmarks/cost.py).
GROUPED_EXAMPLES = 6


def default_per_request(llm: str | LLMChoice, explainer: Explainer) -> int:
    """Features per explanation request when the user did not say: the provider's declared
    default (4 for the hosted APIs, else 1), where the explainer's answers can share a request.
    ``llm``: ``provider:model``, or the job's already resolved :class:`LLMChoice`."""
    choice = llm if isinstance(llm, LLMChoice) else LLMChoice.resolve(llm)
    k = max(1, choice.info.features_per_request)
    if k == 1 or not needs_llm(explainer) or not declared(explainer, "groups_features", ExplainerBase):
        return 1
    if declared(explainer, "reasoning", ExplainerBase):
        return 1
    max_tokens = int(declared(explainer, "max_tokens", ExplainerBase) or 0)
    if max_tokens and k * max_tokens > grouped.MAX_OUTPUT_TOKENS:
        return max(1, grouped.MAX_OUTPUT_TOKENS // max_tokens)
    return k


def with_provider_defaults(options: dict[str, Any], llm: str | LLMChoice,
                           explainer: Explainer) -> dict[str, Any]:
    """``options`` with ``features_per_request`` filled in for ``llm`` when absent (1 is left out,
    so one-feature requests keep the options, and the explanation ids, they always had)."""
    if grouped.OPTION in options:
        return options
    k = default_per_request(llm, explainer)
    if k <= 1:
        return options
    shows = declared(explainer, "n_examples", ExplainerBase) is not None
    fewer = {} if "n_examples" in options or not shows else {
        "n_examples": GROUPED_EXAMPLES}
    return {**options, grouped.OPTION: k, **fewer}


def resolve_spec(spec: Any, explainer: Explainer, llm: LLMChoice | None = None) -> Any:
    """An ``ExplainSpec`` with the provider's default filled in (the same spec when nothing
    changes); ``llm``: ``spec.llm`` already resolved."""
    options = with_provider_defaults(spec.options, llm or spec.llm, explainer)
    if options is spec.options or options == spec.options:
        return spec
    return replace(spec, explainer_options=tuple(sorted(options.items())))


def resolve(spec: Any, explainer: Explainer, build: Callable[[Any], Explainer],
            llm: LLMChoice | None = None) -> tuple[Any, Explainer]:
    """The resolved spec and its explainer, rebuilt with ``build`` when the defaults set one of
    the explainer's own options (``n_examples``), so the requests match the recorded options."""
    resolved = resolve_spec(spec, explainer, llm)
    changed = {k for k, v in resolved.options.items() if k != grouped.OPTION and spec.options.get(k) != v}
    return resolved, (build(resolved) if changed else explainer)
