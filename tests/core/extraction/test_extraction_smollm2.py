"""The brief's own command on the real embedded SmolLM2 and the stdlib corpus (slow)."""

from __future__ import annotations

from pathlib import Path

import pytest

import featurelens


@pytest.mark.slow
def test_extract_smollm2_identity_on_stdlib(cli, tmp_path: Path) -> None:
    store = tmp_path / "smol.duckdb"
    result = cli("extract", "--model", "smollm2", "--hookpoint", "blocks.6.hook_resid_post",
                 "--dictionary", "identity", "--corpus", "stdlib", "--tokens", 2048, "--store", store,
                 "--exclude-outlier-norm", 10)
    assert result.exit_code == 0, result.output
    with featurelens.open_store(store, read_only=True) as db:
        assert db.execute("SELECT count(*) FROM features")[0][0] == 576
        assert db.execute("SELECT count(*) FROM sequences")[0][0] == 32
        # BOS is never an example position, and logit effects are real vocabulary tokens
        assert db.execute("SELECT count(*) FROM examples WHERE kind = 'top' AND max_position = 0")[0][0] == 0
        top = db.execute("SELECT top_logits FROM features WHERE feature = 0")[0][0]
        assert len(top) == 10 and all(isinstance(t, str) for t in top)
        sinks = db.execute("SELECT min(n_tokens) FROM features")[0][0]
        # BOS never counts. These 32 held-out windows all lie inside one module (no document
        # boundary, where SmolLM2's extra attention sinks sit in path order), so none may
        # be excluded beyond BOS; the outlier rule itself is tested in test_extract_pipeline.
        assert sinks <= 32 * 63
