"""The all-at-once line formats: dense by default, OpenAI's layout on request, read back exactly."""

from __future__ import annotations

import asyncio
import math

import pytest

from featurelens.core.errors import FeaturelensError
from featurelens.core.host.protocols import LLMRequest, LLMResponse, TokenLogprobs
from featurelens.llm.window_text import neutralise
from featurelens.scorers import SimulationScorer, prompts
from featurelens.scorers.simulation_lines import FORMATS, line_format
from featurelens.scorers.simulation_parse import from_prompt_logprobs, target_positions
from featurelens.testing.oracle import NoisyOracle, Planted
from featurelens.testing.planted_features import PLANTED, RuleSimulator, planted_records

LOGPROBS = frozenset({"prompt_logprobs"})


def _old_prompt(explanation: str, windows: list[list[str]]) -> str:
    """What featurelens sent before line formats existed, rebuilt from its parts."""
    tokens, values = prompts.SIMULATION_SHOT
    shot = "\n".join(f"{neutralise(t)}\t{v}" for t, v in zip(tokens, values))
    shared = "\n".join([prompts.ALL_AT_ONCE_INTRO, "",
                        prompts.explanation_line(prompts.SIMULATION_SHOT_EXPLANATION),
                        f"<example>\n{shot}\n</example>", "", ""])
    parts = [prompts.explanation_line(explanation)]
    for window in windows:
        parts.append("<example>\n" + "\n".join(f"{neutralise(t)}\tunknown" for t in window) + "\n</example>")
    return shared + "\n".join(parts)


def test_dense_is_the_default_and_openai_layout_is_byte_identical_to_before():
    record = planted_records(seed=2)[0]
    dense = SimulationScorer(adaptive=False).requests(record, "digits", LOGPROBS)
    old = SimulationScorer(adaptive=False, line_format="openai").requests(record, "digits", LOGPROBS)
    assert len(dense) == len(old) == 4
    assert "\tunknown" not in dense[0].prompt and "<texts>\n" in dense[0].prompt
    scorer = SimulationScorer(adaptive=False, line_format="openai")
    groups, _ = scorer._groups(record, "prompt-logprobs")
    for request, group in zip(old, groups):
        assert request.prompt == _old_prompt("digits", [w.example.tokens for w in group])
        assert request.prompt[:request.shared_prompt_chars].endswith("</example>\n\n")
    # the shared prefix is the same for every feature and ends before the explanation
    assert all(r.prompt[:r.shared_prompt_chars] == dense[0].prompt[:dense[0].shared_prompt_chars]
               for r in dense)
    assert dense[0].prompt[dense[0].shared_prompt_chars:].startswith("Feature explanation: digits\n<texts>\n")


def test_bad_line_format_is_one_sentence():
    with pytest.raises(FeaturelensError, match=r"line_format 'tsv' is unknown; use terse or dense or openai"):
        SimulationScorer(line_format="tsv")
    assert line_format(" Dense ") is FORMATS["dense"]
    with pytest.raises(FeaturelensError, match="random_window >= 2"):
        SimulationScorer(random_window=1)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_faithful_and_oracle_simulators_score_every_format_alike(fmt):
    """Both offline simulators answer either placeholder; the scores agree across formats."""
    records = planted_records(seed=4)
    right = PLANTED["digits"][1]
    record = records[list(PLANTED).index("digits")]
    scorer = SimulationScorer(adaptive=False, line_format=fmt)
    requests = scorer.requests(record, right, LOGPROBS)
    responses = [asyncio.run(RuleSimulator().complete(r)) for r in requests]
    result = scorer.score(record, right, responses, LOGPROBS)
    assert result.n_parse_failures == 0 and result.score > 0.8
    reference = SimulationScorer(adaptive=False, line_format="openai")
    again = reference.score(record, right, [asyncio.run(RuleSimulator().complete(r))
                                            for r in reference.requests(record, right, LOGPROBS)], LOGPROBS)
    assert result.score == pytest.approx(again.score)
    oracle = NoisyOracle(records, {"q": Planted(record.dictionary_id, record.feature, 0.8)}, noise=1.0)
    answers = [oracle.answer(r) for r in scorer.requests(record, "q", LOGPROBS)]
    scored = scorer.score(record, "q", answers, LOGPROBS)
    assert scored.n_parse_failures == 0 and scored.metrics["positions_without_digit_probs"] == 0


def _as_tokens(pieces: list[str], value_at: set[int]) -> list[TokenLogprobs]:
    return [TokenLogprobs(p, -1.0, {"0": math.log(0.5), "4": math.log(0.5)} if i in value_at else {})
            for i, p in enumerate(pieces)]


def test_parser_reads_the_dense_placeholder_merged_with_newlines_and_tabs():
    # o200k: '?\n' and '?\n\n' are one token each; some tokenizers merge '\t?' instead
    pieces = ["Feature", " explanation", ":", " x", "\n", "<", "texts", ">\n",
              " a", "\t", "?\n", " b", "\t?", "\n\n", " c", "\t", "?\n", "</", "texts", ">"]
    tokens = _as_tokens(pieces, {10, 12, 16})
    assert target_positions(tokens, "?") == [10, 12, 16]
    values, missing = from_prompt_logprobs(LLMResponse("", prompt_logprobs=tokens), [2, 1], "?")
    assert values == [[2.0, 2.0], [2.0]] and missing == 0
    # a few-shot value after a tab, or a '?' in the text itself, is not a position
    text = _as_tokens([" why", "?", "\t", "3", "\n", " ok", "\t", "?"], {7})
    assert target_positions(text, "?") == [7]
    # a count that does not match fails every window of that request, never a shifted read
    short, _ = from_prompt_logprobs(LLMResponse("", prompt_logprobs=tokens), [2, 2], "?")
    assert all(isinstance(v, ValueError) for v in short)



def test_dense_lines_cost_three_o200k_tokens_a_window_token_and_parse_back(o200k):
    record = planted_records(seed=5)[0]
    dense = SimulationScorer(adaptive=False).requests(record, "digits", LOGPROBS)
    old = SimulationScorer(adaptive=False, line_format="openai").requests(record, "digits", LOGPROBS)
    n_tokens = sum(len(e.tokens) for e in record.examples if e.kind in ("quantile", "random"))

    def count(text: str) -> int:
        return len(o200k.encode(text, disallowed_special=()))

    dense_total, old_total = sum(count(r.prompt) for r in dense), sum(count(r.prompt) for r in old)
    # one token saved per window token, plus the tags of every window but the first and last
    assert old_total - dense_total >= n_tokens
    assert dense_total < 0.77 * old_total
    # the real tokenisation, decoded token by token, is read back at every window token
    for request in dense:
        ids = o200k.encode(request.prompt, disallowed_special=())
        pieces = [o200k.decode_single_token_bytes(i).decode("utf-8", "replace") for i in ids]
        positions = target_positions([TokenLogprobs(p, None) for p in pieces], "?")
        assert len(positions) == request.prompt.count("\t?")
        assert all(pieces[i - 1] == "\t" and pieces[i].startswith("?") for i in positions)


def test_local_provider_reads_the_dense_format_through_a_real_tokenizer(tiny_model_dir):
    """The local provider's prompt log-probs (a real byte-level BPE) parse without a failure."""
    from featurelens.llm.providers import build_provider

    provider = build_provider(f"local:{tiny_model_dir}")
    record = planted_records(seed=6)[0]
    scorer = SimulationScorer(n_activating=3, n_random=3, window=8, adaptive=False)
    requests = scorer.requests(record, "digits", provider.capabilities)
    assert all(isinstance(r, LLMRequest) and r.prompt_logprobs for r in requests)
    responses = [asyncio.run(provider.complete(r)) for r in requests]
    result = scorer.score(record, "digits", responses, provider.capabilities)
    assert result.n_parse_failures == 0 and result.metrics["n_windows_scored"] == 6


def test_random_windows_can_be_cropped_shorter_than_activating_ones():
    record = planted_records(length=32, seed=7)[0]
    scorer = SimulationScorer(adaptive=False, window=16, random_window=8)
    groups, _ = scorer._groups(record, "prompt-logprobs")
    windows = [w for g in groups for w in g]
    lengths = {w.example.kind: set() for w in windows}
    for w in windows:
        lengths[w.example.kind].add(len(w.example.tokens))
    assert lengths["random"] == {8} and lengths["quantile"] == {16}
    assert scorer.options()["random_window"] == 8 and scorer.options()["line_format"] == "terse"
    # larger than the window: the window wins
    assert SimulationScorer(window=16, random_window=32).random_window == 16


def test_a_larger_first_round_goes_out_as_one_request_then_rounds_of_round_windows():
    records = planted_records(seed=8)
    record = records[list(PLANTED).index("digits")]
    oracle = NoisyOracle(records, {"q": Planted(record.dictionary_id, record.feature, 0.3)}, noise=3.0)
    scorer = SimulationScorer(first_round=20, round_windows=10, ci_width=0.05, round_size="fixed")
    first = scorer.requests(record, "q", LOGPROBS)
    assert len(first) == 1 and first[0].prompt.count("\t?") == sum(
        len(w.example.tokens) for w in scorer._groups(record, "prompt-logprobs")[0][0])
    assert len(scorer._groups(record, "prompt-logprobs")[0][0]) == 20
    responses = [oracle.answer(r) for r in first]
    sizes = [20]
    while more := scorer.more_requests(record, "q", responses, LOGPROBS):
        assert len(more) == 1
        sizes.append(len(scorer._groups(record, "prompt-logprobs")[0][len(responses)]))
        responses += [oracle.answer(r) for r in more]
    result = scorer.score(record, "q", responses, LOGPROBS)
    # a noisy explanation and a narrow width: every window is used, 20 first and then tens
    assert sizes[1:-1] == [10] * (len(sizes) - 2) and sum(sizes) == result.metrics["n_windows_max"]
    assert result.metrics["n_windows"] == result.metrics["n_windows_max"] and result.n_parse_failures == 0
    assert scorer.options()["first_round"] == 20
    # the same windows in the same order as with equal rounds: only the request boundaries move
    plain = SimulationScorer(round_windows=10)._groups(record, "prompt-logprobs")[0]
    assert [w.example.tokens for g in plain for w in g] == \
        [w.example.tokens for g in scorer._groups(record, "prompt-logprobs")[0] for w in g]
    with pytest.raises(FeaturelensError, match="first_round >= 1"):
        SimulationScorer(first_round=0)
