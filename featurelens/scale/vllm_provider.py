"""The ``vllm`` provider: explanation and simulation as vLLM batch inference through
``ray.data.llm``.

``vllm:MODEL`` (a Hugging Face id, a model folder, or ``smollm2`` for the embedded model)
gathers the requests the engine sends concurrently into batches, turns each batch into
the rows of a Ray Dataset (:mod:`featurelens.scale.vllm_rows`) and runs them through a
``ray.data.llm`` vLLM processor: one engine per GPU replica (``concurrency``), continuous
batching and prefix caching inside each, on a local or joined Ray cluster. Prompt
log-probabilities (vLLM's ``SamplingParams.prompt_logprobs``) give the all-at-once
simulation in one pass. A row the engine cannot answer fails only its own request.

The engine, cache, journal and store writes stay in this process exactly as with any
provider, so results reach the store once. vLLM needs a GPU and its own install
(``pip install 'featurelens[vllm]'``); without it the provider refuses in one sentence.
``processor_factory`` replaces the vLLM processor (tests run a small transformers model
over the same Dataset rows with it).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
from functools import lru_cache
from typing import Any, Callable

from featurelens.core.errors import FeaturelensError
from featurelens.core.host.protocols import LLMRequest, LLMResponse
from featurelens.llm.providers.local.microbatcher import MicroBatcher
from featurelens.llm.providers.provider_options import whole_option
from featurelens.scale.vllm_rows import (
    INDEX,
    MAX_LOGPROBS,
    request_row,
    response_from_row,
)

#: ``factory(model_source, settings) -> processor``; a processor maps a Dataset to a Dataset.
ProcessorFactory = Callable[[str, dict[str, Any]], Callable[[Any], Any]]

INSTALL = ("the vllm provider needs vLLM and Ray Data LLM on a machine with an NVIDIA GPU; install "
           "them with pip install 'featurelens[vllm]', or use local:MODEL on this machine.")


def _whole(name: str, value: Any, least: int = 1) -> int:
    return whole_option("vllm", name, value, least, example=1)


def _fraction(name: str, value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if not 0 < number <= 1:
        raise FeaturelensError(f"The vllm provider's {name} option must be a fraction in (0, 1], "
                               f"not {value!r}; pass e.g. --provider-option {name}=0.9.")
    return number


def _seconds(name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if not 0 <= number <= 60:
        raise FeaturelensError(f"The vllm provider's {name} option must be seconds between 0 and 60, "
                               f"not {value!r}; pass e.g. --provider-option {name}=1.")
    return number


def model_source(model: str) -> str:
    """``smollm2`` is the embedded model's folder; anything else goes to vLLM as given."""
    from featurelens.llm.providers.local.model_path import EMBEDDED, resolve_model_path

    return str(resolve_model_path(model)) if model == EMBEDDED else model


def vllm_processor(source: str, settings: dict[str, Any]) -> Callable[[Any], Any]:
    """A ``ray.data.llm`` vLLM processor for rows built by :func:`request_row`.

    The driver templated and tokenized already, so the chat-template and tokenize stages
    are off; errors stay per row (``should_continue_on_error``).
    """
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    engine_kwargs: dict[str, Any] = {"enable_prefix_caching": True, "max_logprobs": MAX_LOGPROBS,
                                     "tensor_parallel_size": settings["tensor_parallel_size"]}
    for key in ("max_model_len", "gpu_memory_utilization", "dtype"):
        if settings.get(key) is not None:
            engine_kwargs[key] = settings[key]
    config = vLLMEngineProcessorConfig(
        model_source=source, engine_kwargs=engine_kwargs, concurrency=settings["concurrency"],
        batch_size=settings["batch_size"], should_continue_on_error=True,
        chat_template_stage=False, tokenize_stage=False, detokenize_stage=False)
    return build_processor(config)


class VllmProvider:
    """``vllm:<model>``; options: ``concurrency`` (engine replicas, a GPU each),
    ``tensor_parallel_size``, ``batch`` (most requests per Dataset), ``batch_size`` (rows per
    engine call), ``max_model_len``, ``gpu_memory_utilization``, ``dtype``, ``address``
    (a Ray cluster to join; default: the current one or a new local one), ``gather_s``.

    Every batch is one Dataset execution, which starts its engine replicas (loading the
    model) afresh, so batches are large (4096 requests, gathered while more arrive within
    ``gather_s``) and ``--concurrency`` should be as large to fill them."""

    name = "vllm"
    key_env = None
    capabilities = frozenset({"output_logprobs", "prompt_logprobs"})

    def __init__(self, model: str, *, concurrency: int | str = 1, tensor_parallel_size: int | str = 1,
                 batch: int | str = 4096, batch_size: int | str = 64, max_model_len: int | str | None = None,
                 gpu_memory_utilization: float | str | None = None, dtype: str | None = None,
                 address: str | None = None, gather_s: float | str = 1.0,
                 processor_factory: ProcessorFactory | None = None):
        if processor_factory is None and not (importlib.util.find_spec("vllm") and _has_ray_llm()):
            raise FeaturelensError(f"vllm:{model} cannot run here: {INSTALL}")
        self.model = model
        self.source = model_source(model)
        self.address = address
        self.settings: dict[str, Any] = {
            "concurrency": _whole("concurrency", concurrency),
            "tensor_parallel_size": _whole("tensor_parallel_size", tensor_parallel_size),
            "batch_size": _whole("batch_size", batch_size),
            "max_model_len": None if max_model_len is None else _whole("max_model_len", max_model_len),
            "gpu_memory_utilization": _fraction("gpu_memory_utilization", gpu_memory_utilization),
            "dtype": dtype,
        }
        self.factory = processor_factory or vllm_processor
        self.batcher: MicroBatcher = MicroBatcher(self._answer_batch, max_batch=_whole("batch", batch),
                                                  gather_s=_seconds("gather_s", gather_s))
        self._lock = threading.Lock()
        self._tokenizer: Any = None
        self._processor: Callable[[Any], Any] | None = None
        self._started_ray = False

    async def complete(self, request: LLMRequest) -> LLMResponse:
        return await self.batcher.submit(request)

    def _ready(self) -> tuple[Any, Callable[[Any], Any]]:
        """The driver's tokenizer and the processor, made on first use (Ray joined then)."""
        if self._processor is None:
            from transformers import AutoTokenizer

            from featurelens.core.ray.runtime import connect

            self._tokenizer = AutoTokenizer.from_pretrained(self.source)
            self._started_ray = connect(self.address, num_cpus=os.cpu_count() or 1)
            import ray.data

            ray.data.DataContext.get_current().enable_progress_bars = False  # the engine shows one
            logging.getLogger("ray.data").setLevel(logging.WARNING)
            self._processor = self.factory(self.source, dict(self.settings))
        return self._tokenizer, self._processor

    async def aclose(self) -> None:
        """Leave the Ray cluster if this provider started it (the engines end with it)."""
        if self._started_ray:
            import ray

            ray.shutdown()
            self._started_ray, self._processor = False, None

    def _answer_batch(self, requests: list[LLMRequest]) -> list[LLMResponse | BaseException]:
        """Requests -> Dataset rows -> processor -> one response (or error) per request."""
        import ray.data

        with self._lock:
            tokenizer, processor = self._ready()
            decode = lru_cache(maxsize=65536)(lambda i: tokenizer.decode([i]))
            rows = [request_row(index, tokenizer, request) for index, request in enumerate(requests)]
            answered = {int(row[INDEX]): row for row in processor(ray.data.from_items(rows)).take_all()}
        results: list[LLMResponse | BaseException] = []
        for index, request in enumerate(requests):
            row = answered.get(index)
            if row is None:
                results.append(RuntimeError("the vLLM processor returned no row for this request"))
                continue
            try:
                results.append(response_from_row(row, request, decode))
            except Exception as error:  # noqa: BLE001 - one bad row fails only its request
                results.append(error)
        return results


def _has_ray_llm() -> bool:
    try:
        return importlib.util.find_spec("ray.data.llm") is not None
    except ImportError:  # no ray at all
        return False
