"""The prompted explainers declare their window as ``example_width``: the prompts built from
windows cut as they are read are the prompts built from the whole windows, byte for byte
(so a rerun's response cache still answers them)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from seeded_records import seeded_records

from featurelens.core.host.protocols import example_width
from featurelens.labelers.explainers.highlighted import HighlightedExplainer
from featurelens.labelers.explainers.token_activations import TokenActivationsExplainer
from featurelens.llm.window_text import crop


@pytest.mark.parametrize("explainer", [TokenActivationsExplainer(), TokenActivationsExplainer(style="table"),
                                       TokenActivationsExplainer(window=5, n_quantile=3),
                                       HighlightedExplainer(window=6)])
def test_prompts_from_cut_windows_are_the_prompts_from_whole_windows(explainer):
    width = example_width(explainer)
    assert width == explainer.window
    compared = 0
    for record in seeded_records(5, seq_len=40):
        cut = replace(record, examples=[crop(e, width) for e in record.examples])
        assert explainer.requests(cut) == explainer.requests(record)
        compared += bool(record.examples)
    assert compared > 40
