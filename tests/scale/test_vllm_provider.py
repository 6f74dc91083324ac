# ruff: noqa: F811 - fixtures imported from scale_fixtures are redefined as test arguments
"""The ``vllm`` provider (scale/vllm_provider.py, scale/vllm_rows.py).

vLLM needs a GPU; this machine has none. So its plumbing (requests -> rows of a real Ray
Dataset -> processor -> LLMResponse with prompt log-probs at the read positions,
explanations and scores in the store, errors per row) is tested with a processor built
here that runs the tiny random Llama with transformers over the same Dataset rows and
answers in vLLM's output columns, with ``should_continue_on_error``'s error column. The
answers must equal the ``local`` provider's on the same model. The real vLLM processor
runs in the last test, which skips unless vLLM and CUDA are importable.
"""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
from pathlib import Path
from typing import Any

import pytest
from ray_cluster import ray_cluster  # noqa: F401 - fixture
from scale_fixtures import expected, job  # noqa: F401 - fixtures
from seeded_store import seeded

import featurelens
from featurelens.core.errors import FeaturelensError
from featurelens.core.host.protocols import LLMRequest


class TinyEngine:
    """What ``ray.data.llm``'s vLLM stage does to a row, with transformers instead of vLLM:
    greedy generation, ``logprobs``/``prompt_logprobs`` as ``{token_id: {logprob, rank,
    decoded_token}}`` (the chosen token always included, as vLLM does), and a prompt over
    ``max_model_len`` failed in ``__inference_error__`` like vLLM's length check."""

    def __init__(self, source: str, settings: dict[str, Any]):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(1)
        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(source)
        self.model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).eval()
        self.max_len = settings.get("max_model_len") or 10**9

    def _positions(self, logits: Any, chosen: list[int], k: int) -> list[dict[int, dict[str, Any]]]:
        logp = self.torch.log_softmax(logits.float(), dim=-1)
        out = []
        for row, token in zip(logp, chosen):
            values, indices = row.topk(k)
            entry = {int(i): {"logprob": float(v), "rank": r + 1, "decoded_token": self.tokenizer.decode([int(i)])}
                     for r, (v, i) in enumerate(zip(values.tolist(), indices.tolist()))}
            if token not in entry:
                entry[token] = {"logprob": float(row[token]), "rank": int((row > row[token]).sum()) + 1,
                                "decoded_token": self.tokenizer.decode([token])}
            out.append(entry)
        return out

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        torch = self.torch
        ids = [int(i) for i in row["tokenized_prompt"]]
        params = row["sampling_params"]
        base = {"featurelens_index": row["featurelens_index"], "prompt": row["prompt"], "__inference_error__": ""}
        if len(ids) > self.max_len:
            return {**base, "prompt_token_ids": None, "num_input_tokens": 0, "generated_tokens": [],
                    "generated_text": "", "num_generated_tokens": 0, "logprobs": None, "prompt_logprobs": None,
                    "__inference_error__": f"ValueError: The prompt (total length {len(ids)}) is too long "
                                           f"to fit into the model (maximum context length {self.max_len})."}
        tensor = torch.tensor([ids])
        with torch.inference_mode():
            prompt_lp = None
            if params.get("prompt_logprobs"):
                logits = self.model(tensor).logits[0, :-1]
                prompt_lp = [None] + self._positions(logits, ids[1:], int(params["prompt_logprobs"]))
            result = self.model.generate(
                tensor, attention_mask=torch.ones_like(tensor), max_new_tokens=int(params["max_tokens"]),
                do_sample=False, temperature=None, top_p=None, top_k=None, return_dict_in_generate=True,
                output_scores=True, pad_token_id=self.tokenizer.eos_token_id)
        generated = result.sequences[0, len(ids):].tolist()
        if self.tokenizer.eos_token_id in generated:
            generated = generated[:generated.index(self.tokenizer.eos_token_id)]
        logprobs = None
        if params.get("logprobs"):
            scores = torch.stack([step[0] for step in result.scores[:len(generated)]]) if generated else None
            logprobs = self._positions(scores, generated, int(params["logprobs"])) if generated else []
        return {**base, "prompt_token_ids": ids, "num_input_tokens": len(ids), "generated_tokens": generated,
                "generated_text": self.tokenizer.decode(generated, skip_special_tokens=True),
                "num_generated_tokens": len(generated), "logprobs": logprobs, "prompt_logprobs": prompt_lp}


def tiny_processor(source: str, settings: dict[str, Any]):
    """The injected processor factory: TinyEngine as a Ray Data actor pool over the rows."""
    def processor(dataset):
        from ray.data import ActorPoolStrategy

        return dataset.map(TinyEngine, fn_constructor_args=(source, settings), compute=ActorPoolStrategy(size=1))

    return processor


def _provider(model: Path, **options: Any):
    from featurelens.llm.providers import build_provider

    return build_provider(f"vllm:{model}", processor_factory=tiny_processor, **options)


@pytest.mark.slow
def test_answers_equal_the_local_providers_with_errors_per_row(ray_cluster, tiny_model_dir: Path) -> None:
    pytest.importorskip("ray.data", reason="Ray Data is not installed (pip install 'ray[data]')")
    from featurelens.llm.providers import build_provider
    from featurelens.scale.vllm_rows import RowError

    simulation = LLMRequest(prompt="Look:\n a\tunknown\n b\tunknown\n", max_tokens=0, prompt_logprobs=5,
                            purpose="score:simulation")
    chat = LLMRequest(messages=[{"role": "user", "content": "Name the pattern"}], max_tokens=6, top_logprobs=3,
                      stop_at_newline=True)
    too_long = LLMRequest(prompt="word " * 80, max_tokens=2)
    vllm = _provider(tiny_model_dir, max_model_len=64)
    local = build_provider(f"local:{tiny_model_dir}")

    async def both():
        got = await asyncio.gather(*(vllm.complete(r) for r in (simulation, chat, too_long)), return_exceptions=True)
        want = [await local.complete(r) for r in (simulation, chat)]
        return got, want

    (sim, answer, failed), (want_sim, want_answer) = asyncio.run(both())
    assert vllm.batcher.batch_sizes == [3]  # gathered into one Dataset
    assert isinstance(failed, RowError) and "maximum context length 64" in str(failed)  # only its own request
    assert sim.text == "" and sim.input_tokens == want_sim.input_tokens
    assert [p.token for p in sim.prompt_logprobs] == [p.token for p in want_sim.prompt_logprobs]
    for mine, theirs in zip(sim.prompt_logprobs[1:], want_sim.prompt_logprobs[1:]):
        assert mine.logprob == pytest.approx(theirs.logprob, abs=1e-4)
        assert mine.top.keys() == theirs.top.keys()
        assert list(mine.top.values()) == pytest.approx(list(theirs.top.values()), abs=1e-4)
    # the positions the simulation reads: every "unknown" after a tab carries its alternatives
    # the positions the simulation reads (where "unknown" after a tab ends) carry alternatives
    text, reads = "", []
    for i, position in enumerate(sim.prompt_logprobs):
        text += position.token
        if text.endswith("\tunknown"):
            reads.append(i)
    assert len(reads) == 2 and all(sim.prompt_logprobs[i].top and sim.prompt_logprobs[i].logprob is not None
                                   for i in reads)
    assert answer.text == want_answer.text and answer.output_tokens == want_answer.output_tokens
    assert [p.token for p in answer.output_logprobs] == [p.token for p in want_answer.output_logprobs]


RESULTS = {  # what a labeling run wrote, the provider's name aside
    "explanations": "SELECT dictionary_id, feature, explainer, text, options FROM explanations "
                    "WHERE explainer <> 'seed' ORDER BY ALL",
    "scores": "SELECT dictionary_id, feature, scorer, status, round(score, 4), n_parse_failures FROM scores "
              "ORDER BY ALL",
    "failures": "SELECT stage, dictionary_id, feature, reason, attempts, answer FROM failures ORDER BY ALL",
    "llm_calls": "SELECT purpose, dictionary_id, feature, status, input_tokens, output_tokens FROM llm_calls "
                 "ORDER BY ALL",
}


def _label(store: Path, llm: str, options: dict[str, Any]) -> None:
    from featurelens.labelers.explain import ExplainSpec, explain_features
    from featurelens.llm.engine import EngineSettings
    from featurelens.scorers.score_jobs import ScoreSpec, score_features

    settings = EngineSettings(progress=False)
    explain_features(store, ExplainSpec(llm, limit=3), provider_options=options, settings=settings)
    score_features(store, ScoreSpec(llm, "simulation", explainer="seed"), provider_options=options,
                   settings=settings)


def _results(store: Path) -> dict:
    with featurelens.open_store(store, read_only=True) as db:
        return {name: db.sql(query) for name, query in RESULTS.items()}


@pytest.mark.slow
def test_explain_and_simulation_write_what_the_local_provider_writes_once(
        ray_cluster, expected: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("ray.data", reason="Ray Data is not installed (pip install 'ray[data]')")
    alone, vllm = seeded(expected, tmp_path / "local.duckdb"), seeded(expected, tmp_path / "vllm.duckdb")
    _label(alone, f"local:{tiny_model_dir}", {})
    _label(vllm, f"vllm:{tiny_model_dir}", {"processor_factory": tiny_processor})
    want, got = _results(alone), _results(vllm)
    assert want["scores"].height == 3 and want["llm_calls"].height >= 6  # explain (and retries), 3 simulations
    for name in RESULTS:
        assert got[name].equals(want[name]), f"{name} differs from the local provider's run"
    with featurelens.open_store(vllm, read_only=True) as db:
        assert db.execute("SELECT DISTINCT llm FROM scores") == [(f"vllm:{tiny_model_dir}",)]


def test_without_vllm_the_provider_says_how_to_install(cli, expected: Path, tmp_path: Path) -> None:
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here")
    store = tmp_path / "store.duckdb"
    shutil.copy(expected, store)
    with featurelens.open_store(store, read_only=True) as db:
        before = db.sql("SELECT count(*) AS n FROM runs")
    result = cli("explain", "--llm", "vllm:Qwen/Qwen2.5-0.5B-Instruct", "--limit", "2", "--no-progress",
                 "--no-batch-api", "--store", store)
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "pip install 'featurelens[vllm]'" in result.output
    with featurelens.open_store(store, read_only=True) as db:
        assert db.sql("SELECT count(*) AS n FROM runs").equals(before)  # nothing half-written


@pytest.mark.parametrize(("option", "value"), [("concurrency", "0"), ("gpu_memory_utilization", "1.5"),
                                               ("batch", "many"), ("gather_s", "soon")])
def test_bad_options_are_one_sentence(tiny_model_dir: Path, option: str, value: str) -> None:
    with pytest.raises(FeaturelensError, match=f"vllm provider's {option} option"):
        _provider(tiny_model_dir, **{option: value})


def _gpu_vllm() -> bool:
    if importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return torch.cuda.is_available()


@pytest.mark.slow
@pytest.mark.skipif(not _gpu_vllm(), reason="needs vLLM and a CUDA GPU (pip install 'featurelens[vllm]')")
def test_real_vllm_answers_like_the_local_provider(tiny_model_dir: Path) -> None:
    """On a GPU: the real ray.data.llm processor, the same prompt log-probs as transformers."""
    from featurelens.llm.providers import build_provider

    request = LLMRequest(prompt="Look:\n a\tunknown\n b\tunknown\n", max_tokens=0, prompt_logprobs=5)
    vllm = build_provider(f"vllm:{tiny_model_dir}", gpu_memory_utilization="0.3", dtype="float32")
    local = build_provider(f"local:{tiny_model_dir}", device="cuda", dtype="float32")

    async def both():
        try:
            return await vllm.complete(request), await local.complete(request)
        finally:
            await vllm.aclose()

    got, want = asyncio.run(both())
    assert [p.token for p in got.prompt_logprobs] == [p.token for p in want.prompt_logprobs]
    for mine, theirs in zip(got.prompt_logprobs[1:], want.prompt_logprobs[1:]):
        assert mine.logprob == pytest.approx(theirs.logprob, abs=2e-2)


def test_vllm_with_the_ray_executor_is_one_sentence(cli, expected: Path, tmp_path: Path) -> None:
    store = tmp_path / "store.duckdb"
    shutil.copy(expected, store)
    result = cli("explain", "--llm", "vllm:Qwen/Qwen2.5-0.5B-Instruct", "--executor", "ray", "--no-batch-api",
                 "--no-progress", "--store", store)
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "leave out --executor ray" in result.output and "concurrency=N" in result.output
