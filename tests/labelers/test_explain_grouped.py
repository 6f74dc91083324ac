"""Several features per explanation request: one prefix, each answer read and failed on its own."""

from __future__ import annotations

import re

import pytest

from featurelens.core.errors import FeaturelensError
from featurelens.core.host.protocols import LLMRequest, LLMResponse
from featurelens.labelers.explain import ExplainSpec, explain_features, make_explainer
from featurelens.labelers.explain_grouped import (
    GROUP_RULE,
    grouped_request,
    split_answer,
)
from featurelens.llm.engine import EngineSettings
from featurelens.llm.request_tokens import Counter
from featurelens.testing.planted_features import (
    PLANTED,
    explain_from_evidence,
    planted_records,
    write_planted_store,
)


class GroupedExplainer:
    """Answers 'N: explanation' per 'Feature N:' block (faithfully), leaving out ``skip``."""

    name = "rule"
    model = "grouped"
    capabilities = frozenset()

    def __init__(self, skip: set[int] | None = None, fail: bool = False):
        self.skip, self.fail, self.requests = skip or set(), fail, []

    async def complete(self, request: LLMRequest) -> LLMResponse:
        self.requests.append(request)
        if self.fail:
            raise ValueError("400 bad request")
        blocks = re.split(r"^Feature (\d+):\n", request.messages[-1]["content"], flags=re.M)[1:]
        lines = [f"{n}: {explain_from_evidence(body)}" for n, body in zip(blocks[::2], blocks[1::2], strict=True)
                 if int(n) not in self.skip]
        return LLMResponse(text="\n".join(lines), input_tokens=100, output_tokens=10)


@pytest.fixture
def planted(store):
    records = [r for seed in range(3) for r in planted_records(seed=seed, dictionary_id=f"p{seed}")]
    write_planted_store(store, records)
    return store, records


def _spec(k: int) -> ExplainSpec:
    return ExplainSpec("rule:grouped", "token-activations", (("features_per_request", k),))


def test_one_request_explains_several_features_each_parsed_on_its_own(planted):
    store, records = planted
    provider = GroupedExplainer(skip={2})
    explain_features(store, _spec(4), provider=provider, settings=EngineSettings(progress=False))
    assert len(provider.requests) == 3  # 9 features, 4 per request
    assert all(GROUP_RULE in r.messages[0]["content"] and r.shared_prefix == 3 for r in provider.requests)
    texts = dict(((d, f), t) for d, f, t in store.execute("SELECT dictionary_id, feature, text FROM explanations"))
    names = list(PLANTED)
    assert len(texts) == 7  # groups of 4, 4 and 1: the second feature of the first two got no line
    for (_, feature), text in texts.items():
        assert text == PLANTED[names[feature]][1]
    failures = store.execute("SELECT feature, reason FROM failures ORDER BY dictionary_id, feature")
    assert len(failures) == 2 and all("no line '2: ...'" in reason for _, reason in failures)
    # a rerun asks only for the features that failed, again grouped
    again = GroupedExplainer()
    explain_features(store, _spec(4), provider=again, settings=EngineSettings(progress=False))
    assert len(again.requests) == 1 and again.requests[0].messages[-1]["content"].count("Feature ") == 2
    assert store.execute("SELECT count(*) FROM explanations")[0][0] == 9


def test_a_failed_request_fails_every_feature_in_it(planted):
    store, _ = planted
    explain_features(store, _spec(3), provider=GroupedExplainer(fail=True),
                     settings=EngineSettings(progress=False, retry=__import__(
                         "featurelens.llm.retry", fromlist=["RetryPolicy"]).RetryPolicy(max_attempts=1)))
    assert store.execute("SELECT count(*) FROM explanations")[0][0] == 0
    reasons = [r for (r,) in store.execute("SELECT reason FROM failures WHERE stage = 'explain'")]
    assert sum(r.startswith("LLM call failed") for r in reasons) == 9  # the provider's reason, per feature


def test_grouping_pays_the_prefix_once_and_options_are_checked():
    records = planted_records(length=32, n_top=10, seed=1)
    explainer = make_explainer(_spec(3))
    counter = Counter(exact=False)
    single = sum(counter.request(explainer.requests(r)[0]).total for r in records)
    grouped = counter.request(grouped_request(explainer, records))
    assert grouped.total < single - 1.5 * counter.request(explainer.requests(records[0])[0]).prefix
    assert split_answer("1: digits\nFeature 3) brackets\n9: out of range\n1: again", 3) == {1: "digits", 3: "brackets"}
    with pytest.raises(FeaturelensError, match="whole number"):
        make_explainer(_spec(0))
    with pytest.raises(FeaturelensError, match="at most"):
        make_explainer(ExplainSpec("x:y", "token-activations", (("features_per_request", 64),
                                                                 ("reasoning", True))))
