"""What extraction keeps per feature: bounded by what is kept, not by K x context floats."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import featurelens.core.extraction.topk_examples as topk_examples
from featurelens.core.dictionaries.base import SparseActs
from featurelens.core.extraction.accumulators import HIST_INT32_TOKENS, FeatureStats
from featurelens.core.extraction.merge import merge_stats
from featurelens.core.extraction.state import ExtractionState, Settings, state_device
from featurelens.core.extraction.topk_examples import BestWindows

CPU = torch.device("cpu")
N_FEATURES = 64
SETTINGS = Settings(top_k=8, n_quantile=8, quantile_bins=2, n_random=2, random_pool=4, seed=1)


def _codes(batch: int, context: int, generator: torch.Generator) -> list[SparseActs]:
    """Each token fires 3 random features; only the first 4 positions of a window fire."""
    values = torch.zeros(batch, context, 3)
    indices = torch.zeros(batch, context, 3, dtype=torch.long)
    values[:, :4] = torch.rand(batch, 4, 3, generator=generator) + 0.1
    indices[:, :4] = torch.randint(0, N_FEATURES, (batch, 4, 3), generator=generator)
    return [SparseActs(values.view(-1, 3), indices.view(-1, 3))]


def _fed(context: int) -> ExtractionState:
    state = ExtractionState(N_FEATURES, context, SETTINGS, CPU)
    generator = torch.Generator().manual_seed(0)
    for step in range(12):
        seq = torch.arange(step * 4, step * 4 + 4)
        state.accumulate(_codes(4, context, generator), 4, context, seq, torch.zeros(4, context, dtype=torch.bool))
    return state


def test_kept_state_does_not_grow_with_context() -> None:
    """The same firings in windows 16 or 512 tokens long: the same bytes kept, far below
    the dense K x context floats per feature a top-k state of whole windows would need."""
    short, long = _fed(16), _fed(512)
    assert short.nbytes() == long.nbytes()
    dense = N_FEATURES * (SETTINGS.top_k + SETTINGS.n_quantile) * 512 * 4
    assert long.nbytes() < dense / 10
    assert all(t.ndim <= 2 for t in long.top.state().values())  # no [d_sae, K, context] tensor
    # and the windows kept are the same, with the same activations in their first positions
    for name in ("top", "reservoir"):
        s_seq, s_acts, s_order = getattr(short, name).ranked(0, N_FEATURES)
        l_seq, l_acts, l_order = getattr(long, name).ranked(0, N_FEATURES)
        assert torch.equal(s_seq.gather(1, s_order), l_seq.gather(1, l_order))
        assert torch.equal(s_acts, l_acts[:, :, :16])
        assert not l_acts[:, :, 16:].any()


def test_pool_compacts_and_round_trips(monkeypatch: pytest.MonkeyPatch) -> None:
    """Evicted windows' activations are dropped, the pool stays near what is live, and a
    checkpoint (state/load) restores the same examples as a dense reference."""
    monkeypatch.setattr(topk_examples, "COMPACT_FLOOR", 8)
    generator = torch.Generator().manual_seed(5)
    n_features, k, context = 5, 3, 6
    best = BestWindows(n_features, k, context, CPU)
    reference: dict[tuple[int, int], torch.Tensor] = {}
    window = 0
    for _ in range(60):
        features = torch.randint(0, n_features, (6,), generator=generator).sort().values
        seqs = torch.arange(window, window + 6)
        window += 6
        table = torch.rand(6, context, generator=generator) * (torch.rand(6, context, generator=generator) < 0.4)
        scores = table.amax(dim=1) + 0.01
        for f, s, row in zip(features.tolist(), seqs.tolist(), table, strict=True):
            reference[f, s] = row
        keep = scores > best.threshold(features)
        best.offer(features[keep], seqs[keep], scores[keep], torch.arange(6)[keep], table)
        live = int(sum(reference[f, int(s)].count_nonzero() for f in range(n_features)
                       for s in best.seq[f].tolist() if s >= 0))
        assert best.entry_index.numel() + best._pending_size <= max(8, 2 * live) + 6 * context
    restored = BestWindows(n_features, k, context, CPU)
    restored.load({name: t.clone() for name, t in best.state().items()})
    for state in (best, restored):
        seq, acts, _ = state.ranked(0, n_features)
        for f in range(n_features):
            for slot, s in enumerate(seq[f].tolist()):
                if s >= 0:
                    assert torch.equal(acts[f, slot], reference[f, s])


def _held(best: BestWindows, n_features: int) -> dict[tuple[int, int], torch.Tensor]:
    """``{(feature, window id): activations}`` of every kept window, whatever its slot."""
    seq, acts, _ = best.ranked(0, n_features)
    return {(f, int(seq[f, slot])): acts[f, slot] for f in range(n_features)
            for slot in range(seq.shape[1]) if seq[f, slot] >= 0}


def test_a_checkpoint_with_windows_in_any_slots_loads_and_keeps_them() -> None:
    """A checkpoint whose kept windows sit in any slots (not packed first) resumes exactly,
    and the windows it holds stay when new ones fill the empty slots."""
    best = BestWindows(3, 2, 4, CPU)
    acts = torch.zeros(3, 2, 4)
    acts[0, 1, 2], acts[2, 0, 0] = 0.5, 1.5
    seq = torch.tensor([[-1, 7], [-1, -1], [3, -1]])
    index = torch.nonzero(acts.reshape(-1)).flatten()
    best.load({"score": torch.tensor([[-1.0, 0.5], [-1.0, -1.0], [1.5, -1.0]]), "seq": seq,
               "entry_index": index, "entry_value": acts.reshape(-1)[index],
               "entry_seq": seq.reshape(-1)[index // 4].int(), "low": torch.tensor([-1.0, -1.0, -1.0])})
    held = _held(best, 3)
    assert set(held) == {(0, 7), (2, 3)}
    assert torch.equal(held[(0, 7)], acts[0, 1]) and torch.equal(held[(2, 3)], acts[2, 0])
    new = torch.tensor([[0.0, 0.25, 0.0, 0.0], [0.0, 0.0, 0.0, 2.0]])
    best.offer(torch.tensor([0, 2]), torch.tensor([9, 10]), torch.tensor([0.25, 2.0]), torch.arange(2), new)
    held = _held(best, 3)
    assert set(held) == {(0, 7), (0, 9), (2, 3), (2, 10)}
    assert torch.equal(held[(0, 7)], acts[0, 1]) and torch.equal(held[(0, 9)], new[0])
    assert torch.equal(held[(2, 3)], acts[2, 0]) and torch.equal(held[(2, 10)], new[1])
    assert best.low.tolist() == [0.25, -1.0, 1.5]


def test_histogram_is_int32_until_it_could_overflow() -> None:
    stats = FeatureStats.empty(4, CPU)
    assert stats.hist.dtype == torch.int32
    stats.update(torch.tensor([1, 1]), torch.tensor([0.5, 2.0]), HIST_INT32_TOKENS - 1)
    assert stats.hist.dtype == torch.int32
    other = FeatureStats.empty(4, CPU)
    other.update(torch.tensor([1]), torch.tensor([0.5]), 5)
    merge_stats(stats, other)  # the sum may pass 2**31 tokens: the counts widen first
    assert stats.hist.dtype == torch.int64 and int(stats.hist.sum()) == 3


def test_state_goes_to_host_memory_when_the_gpu_is_short(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (10 * 2**30, 80 * 2**30))
    assert state_device(65536, Settings(), cuda) == cuda
    assert state_device(1 << 22, Settings(), cuda) == CPU  # 4M features: several GB, over half of 10 GiB
    assert state_device(1 << 22, Settings(), CPU) == CPU


_LOAD = """
import json, sys
from pathlib import Path
from featurelens.plugins.formats.saelens import SAELensFormat
def peak():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return int(line.split()[1]) * 1024
def now():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) * 1024
SAELensFormat().load(sys.argv[1])  # imports and first-use allocations out of the way
Path("/proc/self/clear_refs").write_text("5")  # peak := current
base = now()
sae = SAELensFormat().load(sys.argv[1])
print(json.dumps({"base": base, "peak": peak(), "weights": sum(t.numel() * 4 for t in sae.parameters())}))
"""


def test_a_saelens_dictionary_loads_within_about_its_own_size(tmp_path: Path) -> None:
    """Each weight is held once while loading: no initial weights at all (the module is
    built on the meta device, then takes the file's tensors), no cached copy beside the
    module's (a million-feature dictionary is 4.8 GB of them)."""
    from featurelens.plugins.dictionaries.topk import TopKSAE
    from featurelens.plugins.formats.saelens import SAELensFormat

    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux /proc to read peak memory")
    sae = TopKSAE(64, 1 << 18, k=8, hookpoint="blocks.0.hook_resid_post", model_id="tiny")
    SAELensFormat().save(sae, str(tmp_path / "sae"))
    del sae
    out = subprocess.run([sys.executable, "-c", _LOAD, str(tmp_path / "sae")], check=True,
                         capture_output=True, text=True)
    row = json.loads(out.stdout.strip().splitlines()[-1])
    assert row["peak"] - row["base"] < 1.15 * row["weights"], row


def test_live_rows_are_the_ranked_rows_of_features_that_kept_a_window() -> None:
    """``ranked_live`` (what the final write reads) skips features without a window and
    gives the others exactly the ids, activations and order :meth:`ranked` gives them, on
    a chunk that starts mid-dictionary."""
    state = _fed(16)
    state.top.seq[[3, 40, 41]] = -1  # three features that never kept a window
    for name in ("top", "reservoir"):
        best = getattr(state, name)
        seq, acts, order = best.ranked(2, 50)
        features, live_seq, live_acts, live_order = best.ranked_live(2, 50)
        live = torch.nonzero((seq >= 0).any(dim=1)).flatten()
        assert torch.equal(features, live + 2)
        assert torch.equal(live_seq, seq[live]) and torch.equal(live_acts, acts[live])
        assert torch.equal(live_order, order[live])
    assert 3 not in state.top.ranked_live(0, N_FEATURES)[0].tolist()


def test_example_rows_of_live_features_and_of_zero_windows_match_the_dense_rows() -> None:
    """The rows built from live features only, and random windows given as a length
    instead of a zero tensor, are the rows the full dense tensors give."""
    from featurelens.core.extraction.writer import example_rows

    state = _fed(16)
    state.top.seq[5] = -1
    seq, acts, order = state.top.ranked(0, N_FEATURES)
    features, live_seq, live_acts, live_order = state.top.ranked_live(0, N_FEATURES)
    dense = example_rows("d", "c", "top", seq, acts, order)
    live = example_rows("d", "c", "top", live_seq, live_acts, live_order, features=features)
    assert dense.equals(live) and dense.num_rows > 0
    rand = torch.tensor([[4, -1, 9], [-1, -1, -1], [2, 3, 1]])
    zeros = example_rows("d", "c", "random", rand, torch.zeros(3, 3, 16), first_feature=7)
    assert zeros.equals(example_rows("d", "c", "random", rand, 16, first_feature=7))
    assert zeros["feature"].to_pylist() == [7, 7, 9, 9, 9]
