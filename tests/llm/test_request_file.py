"""A batch's request lines on disk: what is read back is what was written, byte for byte."""

from __future__ import annotations

import json

import pytest

from featurelens.llm.batch.request_file import RequestFile


def test_lines_come_back_as_written_and_the_size_is_the_file_size():
    lines = [{"custom_id": f"k{i}", "url": "/v1/chat/completions", "body": {"text": "é‹\n" * i}}
             for i in range(4)]
    with RequestFile() as part:
        assert len(part) == 0 and part.url is None
        for line in lines:
            part.append(line)
        assert len(part) == 4 and part.url == "/v1/chat/completions"
        assert list(part) == lines and part[0] == lines[0] and part[-1] == lines[3]
        data = part.stream().read()
        assert len(data) == part.size
        assert data == b"".join(json.dumps(l, ensure_ascii=False).encode() + b"\n" for l in lines)
        part.append({"custom_id": "k4"})  # appending after a read goes to the end
        assert [l["custom_id"] for l in part] == ["k0", "k1", "k2", "k3", "k4"]
        with pytest.raises(IndexError):
            part[5]
