"""torch.save archives read without unpickling: the same tensors torch wrote, and
anything but plain values and tensors refused before it can run."""

from __future__ import annotations

import collections
import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch

from featurelens.core import torch_archive
from featurelens.core.torch_archive import ArchiveError, UnsafeObject


def test_reads_what_torch_save_wrote(tmp_path: Path) -> None:
    base = torch.randn(4, 6)
    state = collections.OrderedDict([
        ("W", torch.randn(3, 5)), ("transposed", base.t()), ("slice", base[1:3, 2:]),
        ("bf16", torch.randn(7).to(torch.bfloat16)), ("mask", torch.tensor([True, False, True])),
        ("k", torch.tensor(32)), ("big", torch.arange(10, dtype=torch.int64) * 2**40),
        ("param", torch.nn.Parameter(torch.ones(2, 2))), ("empty", torch.zeros(0, 3)),
    ])
    state._metadata = {"": {"version": 1}}  # what a module's state_dict carries
    torch.save(state, tmp_path / "ae.pt")
    got = torch_archive.read(tmp_path / "ae.pt")
    assert list(got) == list(state)
    for name, tensor in state.items():
        assert got[name].dtype == tensor.dtype and torch.equal(got[name], tensor.detach()), name
    plain = {"n": 3, "x": 1.5, "s": "text", "none": None, "flag": True, "nested": [1, (2, "three")],
             "huge": 2**70, "negative": -5}
    torch.save(plain, tmp_path / "plain.pt")
    assert torch_archive.read(tmp_path / "plain.pt") == plain


def test_shapes_reads_no_storage_and_tensors_never_share_memory(tmp_path: Path, monkeypatch) -> None:
    """shapes() gives keys, dtypes and shapes on the meta device without opening a storage;
    read() hands a whole storage out once without a copy, and another tensor over the same
    storage (a slice or reshape saved beside it) gets its own copy. The same tensor saved under two
    names is one object, as torch.load gives it (pickle's memo)."""
    base = torch.randn(4, 6)
    torch.save({"a": base, "tied": base, "rows": base[1:3], "flat": base.view(-1),
                "bf16": torch.ones(5, dtype=torch.bfloat16)},
               tmp_path / "x.pt")
    opened: list[str] = []
    real = zipfile.ZipFile.open

    def spy(self, name, *args, **kwargs):
        opened.append(name.filename if isinstance(name, zipfile.ZipInfo) else name)
        return real(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    meta = torch_archive.shapes(tmp_path / "x.pt")
    assert {k: (tuple(v.shape), v.dtype, v.is_meta) for k, v in meta.items()} == {
        "a": ((4, 6), torch.float32, True), "tied": ((4, 6), torch.float32, True),
        "rows": ((2, 6), torch.float32, True), "flat": ((24,), torch.float32, True),
        "bf16": ((5,), torch.bfloat16, True)}
    assert not [n for n in opened if "/data/" in n]
    got = torch_archive.read(tmp_path / "x.pt")
    assert torch.equal(got["a"], base) and torch.equal(got["tied"], base) and torch.equal(got["rows"], base[1:3])
    assert got["tied"] is got["a"]
    got["a"].zero_()
    assert torch.equal(got["rows"], base[1:3]) and torch.equal(got["flat"], base.view(-1))
    assert torch.equal(got["bf16"], torch.ones(5, dtype=torch.bfloat16))


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_global_that_runs_code_is_refused_by_name(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    torch.save({"W": _Payload(marker)}, tmp_path / "ae.pt")
    with pytest.raises(UnsafeObject, match=r"posix\.system"):
        torch_archive.read(tmp_path / "ae.pt")
    assert not marker.exists()


def _rewrite(source: Path, target: Path, member_suffix: str, edit) -> None:
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as new:
        for info in old.infolist():
            data = old.read(info.filename)
            new.writestr(info.filename, edit(data) if info.filename.endswith(member_suffix) else data)


@pytest.mark.parametrize("member, edit, reason", [
    ("data/0", lambda b: b[:-4], "has 12 bytes, not the 16 it declares"),
    ("data.pkl", lambda b: b.replace(b"K\x04\x85", b"K\x09\x85"), "reaches past the end of its storage"),
    ("data.pkl", lambda b: b[: len(b) // 2], "ends early"),
    ("data.pkl", lambda b: b.replace(b"torch._utils\n_rebuild_tensor_v2", b"torch._utils\n_rebuild_xxxxxx_v2"),
     r"torch\._utils\._rebuild_xxxxxx_v2"),
])
def test_a_damaged_archive_is_refused(tmp_path: Path, member: str, edit, reason: str) -> None:
    torch.save({"W": torch.ones(4)}, tmp_path / "good.pt")
    _rewrite(tmp_path / "good.pt", tmp_path / "bad.pt", member, edit)
    with pytest.raises(ArchiveError, match=reason):
        torch_archive.read(tmp_path / "bad.pt")


def test_a_plain_pickle_is_not_an_archive(tmp_path: Path) -> None:
    (tmp_path / "x.pt").write_bytes(pickle.dumps({"W": [1.0]}))
    with pytest.raises(ArchiveError, match="not a zip archive"):
        torch_archive.read(tmp_path / "x.pt")


@pytest.mark.parametrize("member", ["data/0", "data.pkl"])
def test_a_compressed_member_is_refused_before_it_is_inflated(tmp_path: Path, member: str) -> None:
    torch.save({"W": torch.zeros(1 << 16)}, tmp_path / "good.pt")
    with zipfile.ZipFile(tmp_path / "good.pt") as old, \
            zipfile.ZipFile(tmp_path / "bomb.pt", "w", zipfile.ZIP_STORED) as new:
        for info in old.infolist():
            packed = zipfile.ZIP_DEFLATED if info.filename.endswith(member) else zipfile.ZIP_STORED
            new.writestr(info.filename, old.read(info.filename), compress_type=packed)
    with pytest.raises(ArchiveError, match="is compressed, which torch.save never writes"):
        torch_archive.read(tmp_path / "bomb.pt")


def test_a_member_claiming_more_bytes_than_the_file_holds_is_refused(tmp_path: Path) -> None:
    """A storage declared (in data.pkl and in the zip's directory alike) far larger than the
    file is refused from the sizes alone: nothing of the declared size is allocated."""
    torch.save({"W": torch.ones(4)}, tmp_path / "good.pt")
    claimed = 1 << 29  # floats: 2 GiB
    _rewrite(tmp_path / "good.pt", tmp_path / "big.pt", "data.pkl",
             lambda b: b.replace(b"cpuq\x06K\x04t", b"cpuq\x06J" + claimed.to_bytes(4, "little") + b"t"))
    raw = bytearray((tmp_path / "big.pt").read_bytes())
    with zipfile.ZipFile(tmp_path / "big.pt") as archive:
        name = next(i.filename for i in archive.infolist() if i.filename.endswith("data/0")).encode()
    entry = raw.index(name, raw.index(b"PK\x01\x02")) - 46  # the directory entry of data/0
    assert raw[entry:entry + 4] == b"PK\x01\x02"
    raw[entry + 20:entry + 28] = (4 * claimed).to_bytes(4, "little") * 2  # compressed and plain sizes
    (tmp_path / "bad.pt").write_bytes(bytes(raw))
    with pytest.raises(ArchiveError, match="claims 2147483648 bytes, more than the file holds"):
        torch_archive.read(tmp_path / "bad.pt")
