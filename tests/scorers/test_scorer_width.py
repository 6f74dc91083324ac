"""Scorers that cut windows declare the widest cut as ``example_width``: what they test on and
the prompts they send are the same from windows cut as they are read as from whole windows
(a window cut to W and then to w <= W is the window cut to w)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from seeded_records import seeded_records

from featurelens.core.host.protocols import example_width
from featurelens.core.window_cut import cut_start
from featurelens.llm.window_text import crop
from featurelens.scorers.classifier import DetectionScorer, FuzzingScorer
from featurelens.scorers.embedding import EmbeddingScorer
from featurelens.scorers.scoring_windows import test_windows as held_out_windows
from featurelens.scorers.simulation import SimulationScorer
from featurelens.scorers.token_check import TokenCheckScorer

CAPABILITIES = frozenset({"logprobs", "echo_logprobs", "json_schema"})


def test_cutting_twice_is_cutting_once():
    for n in range(1, 48):
        for wide in range(1, n + 1):
            for narrow in range(1, wide + 1):
                for peak in range(n):
                    first = cut_start(peak, n, wide) if n > wide else 0
                    inside = min(n, wide)
                    second = cut_start(peak - first, inside, narrow) if inside > narrow else 0
                    assert first + second == (cut_start(peak, n, narrow) if n > narrow else 0)


@pytest.mark.parametrize("scorer", [
    DetectionScorer(n_activating=5, n_random=4, window=7), FuzzingScorer(n_activating=5, n_random=4, window=9),
    SimulationScorer(n_activating=5, n_random=4, window=8, random_window=5),
    SimulationScorer(n_activating=5, n_random=4, window=6, random_window=11),
    SimulationScorer(mode="json", n_activating=4, n_random=3, window=10, adaptive=False),
    TokenCheckScorer(n_activating=5, n_random=4, window=6), EmbeddingScorer(n_activating=5, n_random=4, window=6),
])
def test_windows_and_prompts_from_cut_windows_are_those_from_whole_windows(scorer):
    width = example_width(scorer)
    assert width is not None and width >= scorer.window
    compared = 0
    for record in seeded_records(9, seq_len=40):
        cut = replace(record, examples=[crop(e, width) for e in record.examples])
        random_width = getattr(scorer, "random_window", None)
        for order in ("shuffled", "stratified"):
            assert held_out_windows(cut, 5, 4, scorer.window, scorer.name, random_width, order) == \
                held_out_windows(record, 5, 4, scorer.window, scorer.name, random_width, order)
        if scorer.needs_llm and record.examples:
            assert scorer.requests(cut, "cats and dogs", CAPABILITIES) == \
                scorer.requests(record, "cats and dogs", CAPABILITIES)
            compared += 1
    assert compared > 40 or not scorer.needs_llm


@pytest.mark.parametrize("declared", ["32", 31.5, 0, -4, True, [32]])
def test_a_width_that_is_not_a_positive_whole_number_is_the_plugins_error(declared):
    from featurelens.core.errors import PluginError

    class Odd(TokenCheckScorer):
        def example_width(self):
            return declared

    with pytest.raises(PluginError, match=r"^Odd\.example_width\(\) gave .*: fix the plugin\.$"):
        example_width(Odd())


def test_a_width_given_as_any_integer_type_or_none_is_read():
    import numpy as np

    class Numpy(TokenCheckScorer):
        def example_width(self):
            return np.int64(12)

    class Whole(TokenCheckScorer):
        example_width = None

    assert example_width(Numpy()) == 12 and example_width(Whole()) is None
