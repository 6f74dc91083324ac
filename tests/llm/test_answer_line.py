"""The one-line answer rule shared by the local and vllm providers."""

import pytest

from featurelens.llm.providers.answer_line import first_line


@pytest.mark.parametrize("text, expected", [
    ("Explanation: units after a number\nmore", ("Explanation: units after a number", True)),
    ("  units after a number", ("units after a number", False)),
    ("\n\nunits\n", ("units", True)),
    # a label on its own line is not the answer yet: the next line is joined to it
    ("Explanation:\nunits after a number\n", ("Explanation: units after a number", True)),
    ("Explanation:\n\n  units after a number", ("Explanation: units after a number", False)),
    ("Explanation:\n", ("Explanation:", False)),
    ("Explanation:\n\n", ("Explanation:", False)),
    # a sentence that ends in a colon is an answer, not a label
    ("the tokens that follow this word:\nx", ("the tokens that follow this word:", True)),
])
def test_first_line(text, expected):
    assert first_line(text) == expected


def test_the_local_provider_joins_a_label_line_to_its_answer(tiny_model_dir):
    """Generation goes on past a bare ``Explanation:`` line, and the answer keeps the label."""
    import asyncio

    from featurelens.core.host.protocols import LLMRequest
    from featurelens.llm.providers import build_provider

    provider = build_provider(f"local:{tiny_model_dir}")
    request = LLMRequest(messages=[{"role": "user", "content": "Name it."}], max_tokens=12,
                         stop_at_newline=True)
    whole = asyncio.run(provider.complete(LLMRequest(**{**request.__dict__, "stop_at_newline": False})))
    answer = asyncio.run(provider.complete(request))
    assert answer.text == first_line(whole.text)[0]
