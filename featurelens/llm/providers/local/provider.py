"""The ``local`` provider: a transformers model in this process, no network, no key.

``local:smollm2`` is the embedded SmolLM2-135M-Instruct (its converted folder comes
from :mod:`featurelens.core.model.embedded`); ``local:/path/to/model`` loads any causal
LM folder. Generation uses the model's chat template. Prompt log-probabilities come
from ONE forward pass: the top-k next-token log-probabilities at every prompt
position, computed through the output head in slices so a long prompt does not
materialise a ``[tokens, vocab]`` matrix at once. Calls run one at a time in a worker
thread, so the event loop (and the store writer) keeps going. Prompt log-probs are
computed only where ``prompt_logprobs_after`` says they are read
(:mod:`.logprobs`); a request's declared shared prefix is run once and kept
(:mod:`.prefix`; ``prefix_cache=0`` runs every prompt whole). Requests sent
concurrently are gathered into batches of up to ``batch`` (8 by default;
:mod:`.microbatcher`): greedy explanations are each prompted alone and then
decode their answers together (:mod:`.decode`, the same tokens as one at a time),
everything else is answered one at a time
(BENCHMARKS.md "Local models in batches, decode steps shared"; ``batch=1`` restores
``generate`` one request at a time). On the CPU a batch is split across ``workers``
threads (one per core by default), each running torch on one core
(:mod:`.workers`; ``workers=1``: the whole batch in one thread on torch's threads).
"""

from __future__ import annotations

import asyncio
import threading
from contextlib import nullcontext
from functools import lru_cache
from typing import Any

from featurelens.core.host.protocols import LLMRequest, LLMResponse, TokenLogprobs
from featurelens.llm.providers.answer_line import first_line
from featurelens.llm.providers.chat_text import chat_prompt_text
from featurelens.llm.providers.declarations import LOCAL
from featurelens.llm.providers.local import logprobs as local_logprobs
from featurelens.llm.providers.local import prefix as local_prefix
from featurelens.llm.providers.local.batch_dispatch import answer_batch
from featurelens.llm.providers.local.microbatcher import MicroBatcher
from featurelens.llm.providers.local.model_path import EMBEDDED, resolve_model_path
from featurelens.llm.providers.local.workers import (
    ModelWorkers,
    default_workers,
    split_batches,
)
from featurelens.llm.providers.provider_options import whole_option

BATCH = 8  #: requests gathered per batch by default (explanations decoded together)
PREFIXES = 8  #: shared prefixes kept run by default (BENCHMARKS.md "Local models: one core per request")


def _positive(name: str, value: int | str, least: int = 1) -> int:
    return whole_option("local", name, value, least)


def _top(decode: Any, indices: list[int], values: list[float]) -> dict[str, float]:
    """Top alternatives by text; ids that decode alike (byte fragments) keep the likeliest."""
    top: dict[str, float] = {}
    for index, value in zip(indices, values):
        top.setdefault(decode(index), value)
    return top


class LocalProvider:
    """``local:<smollm2|path>``; options: ``device`` (cpu, cuda), ``dtype``, ``batch`` (most
    requests per pass, 8; 1: one at a time), ``batch_tokens`` (most prompt tokens per batch),
    ``prefix_cache`` (shared prefixes kept run, 8 by default; 0: run every prompt whole),
    ``workers`` (threads a batch is split across, each on one core; default one per core
    on the CPU)."""

    name = "local"
    key_env = None
    capabilities = LOCAL.capabilities  #: as its declaration says, the one source

    def __init__(self, model: str = EMBEDDED, *, device: str | None = None, dtype: str | None = None,
                 batch: int | str = BATCH, batch_tokens: int | str = 16384, prefix_cache: int | str = PREFIXES,
                 workers: int | str | None = None):
        self.model = model
        self.path = resolve_model_path(model)
        self.device = device
        self.dtype = dtype
        self.batch, self.batch_tokens = _positive("batch", batch), _positive("batch_tokens", batch_tokens)
        self._lock = threading.Lock()
        self._loaded: tuple[Any, Any] | None = None
        self._batcher: MicroBatcher | None = None
        size = _positive("prefix_cache", prefix_cache, least=0)
        self.prefixes = local_prefix.PrefixCache(size) if size else None
        self._default_workers = workers is None
        self.workers = default_workers(device) if workers is None else _positive("workers", workers)
        self._workers: ModelWorkers | None = None

    # -- loading -------------------------------------------------------------------
    def _load(self) -> tuple[Any, Any]:
        if self._loaded is None:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
            dtype = getattr(torch, self.dtype) if self.dtype else (
                torch.bfloat16 if device.startswith("cuda") else torch.float32)
            from featurelens.core.model.quiet import quiet_loading

            with quiet_loading():
                tokenizer = AutoTokenizer.from_pretrained(self.path)
                model = AutoModelForCausalLM.from_pretrained(self.path, dtype=dtype).to(device).eval()
            if self.prefixes is not None and not local_prefix.install(model):
                self.prefixes = None  # no prefix-aware attention there: whole prompts are faster
            self._loaded = (tokenizer, model)
        return self._loaded

    async def complete(self, request: LLMRequest) -> LLMResponse:
        if self.batch == 1:
            return await asyncio.to_thread(self._complete, request)
        if self._batcher is None:
            self._batcher = MicroBatcher(self._complete_batch, max_batch=self.batch)
        return await self._batcher.submit(request)

    def _complete_batch(self, requests: list[LLMRequest]) -> list[LLMResponse | BaseException]:
        with self._lock:
            tokenizer, model = self._load()

            def answer(part: list[LLMRequest]) -> list[LLMResponse | BaseException]:
                return answer_batch(tokenizer, model, part, batch_tokens=self.batch_tokens,
                                    prompt_ids=lambda r: self._prompt_ids(tokenizer, r)[0].tolist(),
                                    one=self._complete_unlocked,
                                    prefix=lambda r, row: self._prefix(tokenizer, model, r, _as_ids(row)))

            if not split_batches(self.workers, not self._default_workers, next(model.parameters()).device.type):
                return answer(requests)
            if self._workers is None:
                self._workers = ModelWorkers(self.workers)
            return self._workers.map(answer, requests)

    def _complete(self, request: LLMRequest) -> LLMResponse:
        with self._lock:
            return self._complete_unlocked(request)

    def _complete_unlocked(self, request: LLMRequest) -> LLMResponse:
        tokenizer, model = self._load()
        decode = lru_cache(maxsize=65536)(lambda i: tokenizer.decode([i]))
        ids = self._prompt_ids(tokenizer, request)
        prefix = self._prefix(tokenizer, model, request, ids)
        prompt_lp = self._prompt_logprobs(model, ids, request, decode, prefix) \
            if request.prompt_logprobs else []
        text, out_ids, out_lp = "", [], []
        if request.max_tokens > 0:
            text, out_ids, out_lp = self._generate(tokenizer, model, ids, request, decode, prefix)
        return LLMResponse(text=text, input_tokens=int(ids.shape[1]), output_tokens=len(out_ids),
                           output_logprobs=out_lp, prompt_logprobs=prompt_lp)

    # -- helpers -------------------------------------------------------------------
    def _prompt_ids(self, tokenizer: Any, request: LLMRequest) -> Any:
        import torch

        if request.prompt is not None:
            ids = tokenizer(request.prompt, return_tensors="pt").input_ids
        else:
            text = chat_prompt_text(tokenizer, request.messages)
            ids = tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids
        if ids.shape[1] == 0:
            ids = torch.tensor([[tokenizer.bos_token_id or 0]])
        return ids

    def _shared_ids(self, tokenizer: Any, request: LLMRequest) -> list[int]:
        """Token ids of the part of the prompt the request declares shared across features."""
        if request.prompt is not None:
            if request.shared_prompt_chars <= 0:
                return []
            return tokenizer(request.prompt[:request.shared_prompt_chars]).input_ids
        shared = request.messages[:request.shared_prefix]
        if not shared:
            return []
        if getattr(tokenizer, "chat_template", None):
            text = tokenizer.apply_chat_template(shared, tokenize=False)
        else:  # as _prompt_ids renders a bare model's turns
            text = "\n\n".join(f"{m['role']}: {m['content']}" for m in shared)
        return tokenizer(text, add_special_tokens=False).input_ids

    def _prefix(self, tokenizer: Any, model: Any, request: LLMRequest,
                ids: Any) -> local_prefix.Prefix | None:
        """The stored run of the request's shared prefix (run now if new), or None when
        there is none worth keeping. Only ids equal to the prompt's own are used, so a
        boundary the tokenizer merges differently only shortens the prefix."""
        if self.prefixes is None:
            return None
        row = ids[0].tolist()
        n = min(local_prefix.common_length(self._shared_ids(tokenizer, request), row), len(row) - 1)
        if n < local_prefix.MIN_PREFIX:
            return None
        return self.prefixes.get(model, row[:n])

    def _prompt_logprobs(self, model: Any, ids: Any, request: LLMRequest, decode: Any,
                         prefix: local_prefix.Prefix | None = None) -> list[TokenLogprobs]:
        import torch

        row = ids[0].tolist()
        with torch.inference_mode():
            if prefix is None:
                hidden = model.base_model(input_ids=ids.to(next(model.parameters()).device)
                                          ).last_hidden_state[0]  # [T, d]
            else:
                hidden = local_prefix.continue_hidden(model, prefix, row)
            return local_logprobs.prompt_logprobs(model.get_output_embeddings(), hidden, row,
                                                  request.prompt_logprobs, decode,
                                                  request.prompt_logprobs_after)

    def _generate(self, tokenizer: Any, model: Any, ids: Any, request: LLMRequest, decode: Any,
                  prefix: local_prefix.Prefix | None = None) -> tuple[str, list[int], list[TokenLogprobs]]:
        import torch

        device = next(model.parameters()).device
        sample = request.temperature > 0
        kwargs: dict[str, Any] = {"max_new_tokens": request.max_tokens, "do_sample": sample,
                                  "return_dict_in_generate": True,
                                  "output_scores": bool(request.top_logprobs),
                                  "pad_token_id": tokenizer.pad_token_id or tokenizer.eos_token_id}
        if sample:
            kwargs["temperature"] = request.temperature
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if request.stop_at_newline:
            kwargs["stopping_criteria"] = _stop_at_line(tokenizer, ids.shape[1])
        if prefix is not None:  # generation continues the prefix's cache: only the rest is prefilled
            kwargs[local_prefix.cache_keyword(model)] = local_prefix.fresh_cache(prefix)
        with torch.inference_mode(), (local_prefix.continuing() if prefix is not None else nullcontext()):
            result = model.generate(ids.to(device), attention_mask=torch.ones_like(ids).to(device),
                                    **kwargs)
        out_ids = result.sequences[0, ids.shape[1]:].tolist()
        eos = tokenizer.eos_token_id
        if eos is not None and eos in out_ids:
            out_ids = out_ids[:out_ids.index(eos)]
        logprobs: list[TokenLogprobs] = []
        if request.top_logprobs:
            for step, token in enumerate(out_ids):
                logp = torch.log_softmax(result.scores[step][0].float(), dim=-1)
                values, indices = logp.topk(request.top_logprobs)
                top = _top(decode, indices.tolist(), values.tolist())
                logprobs.append(TokenLogprobs(decode(token), float(logp[token]), top))
        text = tokenizer.decode(out_ids, skip_special_tokens=True)
        if request.stop_at_newline:
            text = first_line(text)[0]
        return text, out_ids, logprobs


def _as_ids(row: list[int]) -> Any:
    import torch

    return torch.tensor([row])


def _stop_at_line(tokenizer: Any, start: int) -> Any:
    """Generation stops once the new text holds a whole answer line (:mod:`featurelens.llm.providers.answer_line`)."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class StopAtLine(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            text = tokenizer.decode(input_ids[0, start:], skip_special_tokens=True)
            done = first_line(text)[1]
            return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([StopAtLine()])
