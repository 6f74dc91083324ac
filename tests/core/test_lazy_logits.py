"""Lazy logit effects: a lazy extraction writes NULL effects and a pending marker; filling
them (explicitly, or through the explain job and the exports) stores exactly what an eager
extraction stores; a second fill writes nothing; missing files are one sentence."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest
import torch
from extract_calls import extract_with

import featurelens
from featurelens.core.errors import FeaturelensError
from featurelens.core.extraction.logit_effects import EAGER_MAX_FEATURES, choose_mode
from featurelens.core.host.manager import create
from featurelens.core.host.protocols import LLMRequest, LLMResponse
from featurelens.core.lazy_logits import PENDING, fill
from featurelens.core.selection import Selection, load_records
from featurelens.plugins.dictionaries.topk import TopKSAE
from featurelens.testing import SAMPLE_TEXT

HOOK = "blocks.1.hook_resid_post"
EFFECTS = "SELECT feature, top_logits, top_logit_values, bottom_logits, bottom_logit_values FROM features ORDER BY feature"
BASE = dict(hookpoint=HOOK, tokens=256, context=16, batch_size=4, progress=False, top_k=2, n_quantile=2,
            n_random=1, device="cpu")


@pytest.fixture(scope="module")
def saelens_dir(tmp_path_factory: pytest.TempPathFactory, tiny_backend) -> Path:
    torch.manual_seed(3)
    folder = tmp_path_factory.mktemp("dict") / "sae"
    sae = TopKSAE(tiny_backend.d_model, 700, k=2)  # 2 of 700 a token: many never fire
    sae.hookpoint, sae.model_id = HOOK, tiny_backend.model_id
    create("dictionary_format", "saelens").save(sae, str(folder))
    return folder


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "text.txt"
    path.write_text("\n\n".join(SAMPLE_TEXT * 20), encoding="utf-8")
    return path


def _extract(path: Path, model_dir: Path, dictionary: str, mode: str, corpus: Path) -> None:
    extract_with(store=path, model=str(model_dir), dictionary=dictionary, logit_effects=mode, corpus=str(corpus),
                 **BASE)


def _rows(path: Path) -> list[tuple]:
    with featurelens.open_store(path, read_only=True) as store:
        return store.execute(EFFECTS)


@pytest.fixture(scope="module")
def eager(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, saelens_dir: Path, corpus: Path) -> Path:
    path = tmp_path_factory.mktemp("eager") / "all.duckdb"
    _extract(path, tiny_model_dir, str(saelens_dir), "all", corpus)
    return path


@pytest.fixture(scope="module")
def lazy_once(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, saelens_dir: Path,
              corpus: Path) -> Path:
    path = tmp_path_factory.mktemp("lazy") / "lazy.duckdb"
    _extract(path, tiny_model_dir, str(saelens_dir), "lazy", corpus)
    return path


@pytest.fixture
def lazy(tmp_path: Path, lazy_once: Path) -> Path:
    """A lazy extraction's store of this test's own: the tests fill and rewrite it."""
    path = tmp_path / "lazy.duckdb"
    shutil.copyfile(lazy_once, path)
    return path


def test_lazy_extraction_writes_null_effects_and_says_where_they_come_from(lazy: Path, saelens_dir: Path,
                                                                          tiny_model_dir: Path) -> None:
    assert all(row[1:] == (None,) * 4 for row in _rows(lazy))
    with featurelens.open_store(lazy, read_only=True) as store:
        config = json.loads(store.execute("SELECT config FROM runs WHERE kind = 'extract'")[0][0])
    assert config["logit_effects"] == "lazy"
    assert config[PENDING] == {"model": str(tiny_model_dir.resolve()), "backend": "hf", "dtype": "float32",
                               "dictionary": str(saelens_dir.resolve()), "hookpoint": HOOK,
                               "fold_final_norm": True}


def test_filling_stores_what_eager_extraction_stores_and_a_second_fill_writes_nothing(lazy: Path,
                                                                                     eager: Path) -> None:
    with featurelens.open_store(lazy) as store:
        first = fill(store, Selection(where="feature < 300"), progress=False, chunk=128)  # two chunks + a part
        assert first.filled == 300
        rest = fill(store, Selection(), progress=False, chunk=128)
        assert rest.filled == 400
        assert fill(store, Selection(), progress=False).filled == 0
    filled, expected = _rows(lazy), _rows(eager)
    assert [r[0] for r in filled] == [r[0] for r in expected]
    for got, want in zip(filled, expected, strict=True):
        assert got[1] == want[1] and got[3] == want[3]  # the same tokens
        assert got[2] == pytest.approx(want[2], rel=1e-6) and got[4] == pytest.approx(want[4], rel=1e-6)


def test_a_fill_killed_between_chunks_keeps_its_chunks_and_the_rerun_does_the_rest(lazy: Path,
                                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from featurelens.core import lazy_logits

    real, calls = lazy_logits._write, []

    def dies_on_the_second_chunk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(*args, **kwargs)

    monkeypatch.setattr(lazy_logits, "_write", dies_on_the_second_chunk)
    with featurelens.open_store(lazy) as store:
        with pytest.raises(KeyboardInterrupt):
            fill(store, Selection(), progress=False, chunk=100)
    assert [row[0] for row in _rows(lazy) if row[1] is not None] == list(range(100))
    monkeypatch.setattr(lazy_logits, "_write", real)
    with featurelens.open_store(lazy) as store:
        assert fill(store, Selection(), progress=False, chunk=100).filled == 600


def test_a_product_failing_on_the_worker_thread_is_raised_and_the_chunks_before_it_are_kept(
        lazy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from featurelens.core import lazy_logits

    real, calls = lazy_logits._effects, []

    def fails_on_the_third_chunk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise MemoryError("out of memory in the product")
        return real(*args, **kwargs)

    monkeypatch.setattr(lazy_logits, "_effects", fails_on_the_third_chunk)
    with featurelens.open_store(lazy) as store:
        with pytest.raises(MemoryError, match="in the product"):
            fill(store, Selection(), progress=False, chunk=100)
    assert [row[0] for row in _rows(lazy) if row[1] is not None] == list(range(200))


def test_the_whole_dictionary_path_and_the_native_format_give_the_same_effects(tmp_path: Path, tiny_model_dir: Path,
                                                                              tiny_backend, corpus: Path) -> None:
    torch.manual_seed(4)
    folder = tmp_path / "native"
    sae = TopKSAE(tiny_backend.d_model, 90, k=3)
    sae.hookpoint, sae.model_id = HOOK, tiny_backend.model_id
    create("dictionary_format", "featurelens").save(sae, str(folder))
    for spec in ("identity", str(folder)):  # identity: no file to slice, the loader gives its rows
        _extract(tmp_path / "eager.duckdb", tiny_model_dir, spec, "all", corpus)
        _extract(tmp_path / "lazy.duckdb", tiny_model_dir, spec, "lazy", corpus)
        with featurelens.open_store(tmp_path / "lazy.duckdb") as store:
            assert fill(store, Selection(), progress=False).filled > 0
        for got, want in zip(_rows(tmp_path / "lazy.duckdb"), _rows(tmp_path / "eager.duckdb"), strict=True):
            assert got[1] == want[1] and got[2] == pytest.approx(want[2], rel=1e-6)
        for name in ("eager.duckdb", "lazy.duckdb"):
            (tmp_path / name).unlink()


def test_a_missing_dictionary_is_one_sentence_and_nothing_is_written(lazy: Path, saelens_dir: Path,
                                                                     tmp_path: Path) -> None:
    moved = tmp_path / "moved"
    shutil.copytree(saelens_dir, moved)
    with featurelens.open_store(lazy) as store:
        store.execute("UPDATE runs SET config = json_merge_patch(config, ?)",
                      [json.dumps({PENDING: {"dictionary": str(tmp_path / "gone")}})])
        with pytest.raises(FeaturelensError) as error:
            fill(store, Selection(), progress=False)
        assert str(tmp_path / "gone") in str(error.value) and "--dictionary-path" in str(error.value)
        assert store.execute("SELECT count(*) FROM features WHERE top_logits IS NOT NULL")[0][0] == 0
        # its new place given: filled from there
        assert fill(store, Selection(where="feature < 5"), dictionary=str(moved), progress=False).filled == 5
        store.execute("UPDATE runs SET config = json_merge_patch(config, ?)",
                      [json.dumps({PENDING: {"model": str(tmp_path / "no-model")}})])
        with pytest.raises(FeaturelensError) as error:
            fill(store, Selection(), dictionary=str(moved), progress=False)
        assert str(tmp_path / "no-model") in str(error.value) and "--model" in str(error.value)
        assert store.execute("SELECT count(*) FROM features WHERE top_logits IS NOT NULL")[0][0] == 5


def test_auto_is_eager_for_small_dictionaries_and_on_gpus_and_unknown_modes_are_refused() -> None:
    assert choose_mode("auto", EAGER_MAX_FEATURES, "cpu") == "all"
    assert choose_mode("auto", EAGER_MAX_FEATURES + 1, "cpu") == "lazy"
    assert choose_mode("auto", 2**24, "cuda:0") == "all"
    assert choose_mode("fired", 2**24, "cpu") == "fired"
    with pytest.raises(FeaturelensError, match="--logit-effects must be one of"):
        choose_mode("sometimes", 10, "cpu")


def test_an_unknown_mode_is_refused_before_the_store_is_touched(tmp_path: Path, tiny_model_dir: Path,
                                                                  corpus: Path) -> None:
    with pytest.raises(FeaturelensError, match="--logit-effects must be one of"):
        _extract(tmp_path / "s.duckdb", tiny_model_dir, "identity", "sometimes", corpus)
    assert not (tmp_path / "s.duckdb").exists()


class Recorder:
    """An LLM that answers every explain request with one phrase and keeps the requests."""

    name, model, capabilities = "rule", "recorder", frozenset()

    def __init__(self) -> None:
        self.requests: list[LLMRequest] = []

    async def complete(self, request: LLMRequest) -> LLMResponse:
        self.requests.append(request)
        return LLMResponse(text="tokens of a tiny model", input_tokens=10, output_tokens=5)


def test_the_explainers_logit_lines_compute_pending_effects_first(lazy: Path, eager: Path) -> None:
    from featurelens.labelers.explain import ExplainSpec, explain_features
    from featurelens.llm.engine import EngineSettings

    provider = Recorder()
    spec = ExplainSpec("openai:gpt-4o-mini", "token-activations", (("logits", True),), where="feature < 60")
    with featurelens.open_store(lazy) as store:
        explain_features(store, spec, provider=provider, settings=EngineSettings(progress=False))
        fired = [f for (f,) in store.execute("SELECT feature FROM features WHERE feature < 60 AND fire_count > 0")]
        stored = {f: top for f, top in store.execute("SELECT feature, top_logits FROM features WHERE feature < 60")}
        record = load_records(store, [(store.execute("SELECT dictionary_id FROM features LIMIT 1")[0][0], fired[0])])[0]
    assert fired and all(stored[f] is not None for f in fired)  # the features it explained
    assert any(stored[f] is None for f in stored if f not in fired)  # never-fired ones were left alone
    expected = {f: top for f, top, *_ in _rows(eager)}
    assert record.top_logits == expected[fired[0]]
    prompts = "".join(r.messages[-1]["content"] for r in provider.requests)
    assert "‹none›" not in prompts  # every logit line names tokens


def test_exports_compute_pending_effects(lazy: Path, eager: Path, tmp_path: Path) -> None:
    from featurelens.export.runner import export

    export(lazy, "neuronpedia", tmp_path / "np", where="feature < 40")
    lines = []
    for batch in sorted((tmp_path / "np").glob("v1/*/*/features/batch-*.jsonl.gz")):
        with gzip.open(batch, "rt", encoding="utf-8") as handle:
            lines.extend(json.loads(line) for line in handle)
    expected = {f: top for f, top, *_ in _rows(eager)}
    assert len(lines) == 40
    for line in lines:
        assert line["pos_str"] == expected[int(line["index"])]
    assert sum(row[1] is not None for row in _rows(lazy)) == 40


def test_the_logits_command_fills_a_selection_with_a_summary_and_then_has_nothing_to_do(lazy: Path, cli) -> None:
    first = cli("logits", "--store", lazy, "--where", "feature < 10")
    assert first.exit_code == 0, first.output
    assert "Stored the logit effects of 10 feature(s)" in first.output
    again = cli("logits", "--store", lazy, "--where", "feature < 10")
    assert again.exit_code == 0 and "nothing to fill" in again.output
    assert sum(row[1] is not None for row in _rows(lazy)) == 10


def test_the_browser_page_says_how_to_fill_pending_effects(lazy: Path) -> None:
    from featurelens.browser.links import ServerLinks
    from featurelens.browser.queries import BrowserData
    from featurelens.browser.render_feature import feature_page

    data = BrowserData(lazy)
    try:
        did = data.dictionaries()[0]["dictionary_id"]
        page = feature_page(data.feature(did, 3), ServerLinks())
    finally:
        data.close()
    assert "Not computed yet" in page and f'featurelens logits --dictionary {did}' in page


def test_lazy_needs_the_dictionary_path_when_given_an_object(tmp_path: Path, tiny_backend, corpus: Path) -> None:
    sae = TopKSAE(tiny_backend.d_model, 50, k=2)
    with pytest.raises(FeaturelensError, match="set ExtractSpec.dictionary to its path"):
        extract_with(store=tmp_path / "s.duckdb", model_obj=tiny_backend, dictionary_obj=sae, logit_effects="lazy",
                     corpus=str(corpus), **BASE)
    assert not (tmp_path / "s.duckdb").exists()


def test_decoder_rows_sliced_from_the_file_are_the_loaded_rows(saelens_dir: Path) -> None:
    fmt = create("dictionary_format", "saelens")
    whole = fmt.load(str(saelens_dir)).decoder_directions()
    for ids in ([0, 1, 2, 3], [5, 40, 41, 300, 699], [699], []):  # runs, gaps past ROW_GAP, the last row
        chosen = torch.tensor(ids, dtype=torch.long)
        assert torch.equal(fmt.decoder_rows(str(saelens_dir), chosen), whole[chosen])
    with pytest.raises(FeaturelensError, match="fewer than feature 700"):
        fmt.decoder_rows(str(saelens_dir), torch.tensor([3, 700]))


def test_serve_with_the_model_shows_a_pending_features_effects_without_storing_them(lazy: Path, eager: Path,
                                                                                  tiny_backend) -> None:
    import urllib.request
    from urllib.parse import quote

    from featurelens.browser.server import url_of
    from featurelens.browser.steering_server import make_steering_server
    from featurelens.testing.servers import start_in_thread

    server = make_steering_server(lazy, "127.0.0.1", 0, model="unused", backend=tiny_backend)
    start_in_thread(server)
    try:
        did = server.browser_data.dictionaries()[0]["dictionary_id"]
        with urllib.request.urlopen(f"{url_of(server)}feature/{quote(did, safe='')}/3") as response:
            page = response.read().decode()
    finally:
        server.shutdown()
        server.server_close()
        server.browser_data.close()
    assert "Computed for this page by the served model" in page and "Not computed yet" not in page
    expected = {f: (top, values) for f, top, values, *_ in _rows(eager)}[3]
    from featurelens.browser.templating import fmt

    assert all(fmt(v) in page for v in expected[1][:3])
    assert all(row[1] is None for row in _rows(lazy))  # nothing stored
