"""The extraction stage: fill the feature store from a model, a corpus and a dictionary.

``extract(ExtractSpec(...))`` is the entry point for the CLI and for the
``featurelens run`` job. Modules, in data-flow order: packing (windows), state
(per-batch update), accumulators (statistics and histogram), topk_examples,
quantile_sampling, random_examples, logit_effects, writer (store rows), resume (run ids
and checkpoints), extractor (the loop that ties them together).
"""

from featurelens.core.extraction.extractor import ExtractResult, ExtractSpec, extract

__all__ = ["ExtractResult", "ExtractSpec", "extract"]
