"""Every hookspec is typed, documented, and has a test of its own.

A new hook added to featurelens/core/host/hookspecs.py fails these tests until it has a
docstring with ``:param NAME:`` for each argument and ``:return:``, type annotations,
and a test function named ``test_hook_<hookname>`` somewhere under tests/.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from featurelens.core.host import hookspecs
from featurelens.core.host.manager import describe_hooks
from featurelens.registry.components import KINDS

TESTS = Path(__file__).resolve().parents[1]


def _specs() -> dict[str, object]:
    return {name: fn for name, fn in vars(hookspecs).items()
            if callable(fn) and hasattr(fn, "featurelens_spec")}


def test_there_are_hookspecs_for_every_component_kind_and_commands() -> None:
    assert set(KINDS.values()) | {"register_commands"} == set(_specs())
    assert set(describe_hooks()) == set(_specs())


@pytest.mark.parametrize("name", sorted(_specs()))
def test_hookspec_is_documented_and_typed(name: str) -> None:
    spec = _specs()[name]
    doc = inspect.getdoc(spec) or ""
    signature = inspect.signature(spec)
    assert doc.splitlines() and doc.splitlines()[0].endswith("."), f"{name}: one-line summary first"
    for parameter in signature.parameters.values():
        assert re.search(rf":param {parameter.name}:\s*\S", doc), f"{name}: no :param {parameter.name}:"
        assert parameter.annotation is not inspect.Parameter.empty, f"{name}: {parameter.name} untyped"
    assert re.search(r":return:\s*\S", doc), f"{name}: no :return:"
    assert signature.return_annotation is not inspect.Signature.empty, f"{name}: return untyped"


@pytest.mark.parametrize("name", sorted(_specs()))
def test_hookspec_has_its_own_test(name: str) -> None:
    pattern = re.compile(rf"^\s*(async\s+)?def test_hook_{name}\b", re.MULTILINE)
    owners = [p.name for p in TESTS.rglob("test_*.py") if pattern.search(p.read_text("utf-8"))]
    assert owners, f"hook {name} has no test: add `def test_hook_{name}(...)` under tests/"


def test_plugin_guide_lists_exactly_the_hookspecs() -> None:
    guide = (TESTS.parent / "docs" / "plugins.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `(register_\w+)` \|", guide, flags=re.MULTILINE))
    assert listed == set(_specs()), "docs/plugins.md hooks table is out of date"
