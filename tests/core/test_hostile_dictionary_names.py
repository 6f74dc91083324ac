"""Hostile dictionary names: each is one sentence before anything is looked up."""

from __future__ import annotations

from pathlib import Path

import pytest

from featurelens.core.dictionaries.pretrained import resolve
from featurelens.core.errors import FeaturelensError


@pytest.fixture(autouse=True)
def offline_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


@pytest.mark.parametrize("spec,needle", [
    ("hf:bad name/re po", "is not a Hugging Face repository id"),
    ("hf:a..b/c", "is not a Hugging Face repository id"),
    ("hf:org/ünïcode", "is not a Hugging Face repository id"),
    ("hf:" + "a" * 300 + "/b", "is not a Hugging Face repository id"),
    ("hf:org/repo/../../../../etc", "climbs out of the repository"),
    ("hf:org/repo/./x", "climbs out of the repository"),
    ("saelens:/layer_6", "needs both parts"),
    ("saelens:release/", "needs both parts"),
])
def test_bad_names_are_one_sentence(spec: str, needle: str) -> None:
    with pytest.raises(FeaturelensError) as caught:
        resolve(spec)
    assert needle in str(caught.value) and "\n" not in str(caught.value)


def test_a_subfolder_cannot_reach_outside_the_cached_repository(offline_cache: Path, tmp_path: Path) -> None:
    """A cached snapshot next to a folder the name climbs to: refused, not loaded from there."""
    snapshot = offline_cache / "models--org--repo" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "cfg.json").write_text("{}")
    (offline_cache / "models--org--repo" / "refs").mkdir()
    (offline_cache / "models--org--repo" / "refs" / "main").write_text("0" * 40)
    (tmp_path / "outside").mkdir()
    with pytest.raises(FeaturelensError, match="climbs out"):
        resolve("hf:org/repo/../../../../outside")
