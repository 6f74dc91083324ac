"""Prompts a small local model can follow: one short phrase, one line, a token cap."""

from __future__ import annotations

import asyncio

import pytest

from featurelens.core.host.protocols import LLMRequest, LLMResponse, ParseError
from featurelens.labelers.explainers import prompts
from featurelens.labelers.explainers.token_activations import TokenActivationsExplainer
from featurelens.llm.cache import cache_key
from featurelens.llm.providers.openai_provider import chat_body
from featurelens.testing.planted_features import planted_records


def test_explain_requests_ask_for_one_short_line_and_cap_tokens():
    record = planted_records(seed=0)[1]
    request = TokenActivationsExplainer(style="table").requests(record)[0]
    assert request.stop_at_newline and request.max_tokens <= 32
    assert "one short phrase (at most 10 words)" in request.messages[0]["content"]
    reasoning = TokenActivationsExplainer(style="table", reasoning=True).requests(record)[0]
    assert not reasoning.stop_at_newline  # reasoning needs several lines before its answer
    assert prompts.ANSWER_RULE.split(". ", 1)[1] in reasoning.messages[0]["content"]


def test_a_copied_few_shot_answer_is_a_failure():
    explainer = TokenActivationsExplainer()
    record = planted_records(seed=0)[1]
    with pytest.raises(ParseError, match="copied"):
        explainer.parse(record, [LLMResponse(text=prompts.FEW_SHOT_TOKEN_ANSWER)])
    assert explainer.parse(record, [LLMResponse(text="Explanation: the word cat")]) == "the word cat"


def test_stop_at_newline_is_in_the_cache_key_only_when_set():
    plain = LLMRequest(messages=[{"role": "user", "content": "x"}], max_tokens=8)
    assert "stop_at_newline" not in plain.cache_material()  # keys of stored answers stay valid
    stopped = LLMRequest(messages=plain.messages, max_tokens=8, stop_at_newline=True)
    assert cache_key("local", "m", plain) != cache_key("local", "m", stopped)
    assert chat_body("gpt", stopped)["stop"] == ["\n"] and "stop" not in chat_body("gpt", plain)


def test_local_generation_stops_at_the_end_of_the_first_line(tiny_model_dir, one_thread):
    import torch
    from transformers import AutoTokenizer

    from featurelens.llm.providers.local.provider import _stop_at_line

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    prompt = tokenizer("prompt", return_tensors="pt").input_ids
    criteria = _stop_at_line(tokenizer, prompt.shape[1])

    def stops(text: str) -> bool:
        new = tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids
        return bool(criteria(torch.cat([prompt, new], dim=1), None)[0])

    assert not stops("\nthe word")  # a leading line break is not the end of the answer
    assert not stops("the word cat")
    assert stops("the word cat\nExplanation:")

    from featurelens.llm.providers import build_provider

    provider = build_provider(f"local:{tiny_model_dir}")
    request = LLMRequest(messages=[{"role": "user", "content": "Say something.\n\nmore"}],
                         max_tokens=24, stop_at_newline=True)
    response = asyncio.run(provider.complete(request))
    assert "\n" not in response.text


@pytest.mark.parametrize("answer, expected", [
    ("Explanation: the `def` statement. It returns the value of the `next` function", "the `def` statement"),
    ('Explanation: a feature that responds to the "run" command. The feature is a feature that is',
     'the "run" command'),
    ("Explanation: units, e.g. Km and kg", "units, e.g. Km and kg"),
    ("Explanation: version numbers like 3.11 in imports", "version numbers like 3.11 in imports"),
])
def test_a_label_is_its_first_sentence(answer, expected):
    record = planted_records(seed=0)[1]
    assert TokenActivationsExplainer().parse(record, [LLMResponse(text=answer)]) == expected
