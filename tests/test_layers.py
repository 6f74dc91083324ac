"""The floors of docs/architecture.md hold: no import goes up a floor or sideways."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "featurelens"


def floors() -> list[list[str]]:
    """The ```floors block of docs/architecture.md, bottom floor first."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    block = re.search(r"```floors\n(.*?)```", text, re.S)
    assert block, "docs/architecture.md lost its ```floors block"
    return [line.split(":", 1)[1].split() for line in block.group(1).strip().splitlines()]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    """Every featurelens module ``path`` imports, at top level or inside functions."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return {m for m in found if m == "featurelens" or m.startswith("featurelens.")}


def place(module: str, plan: list[list[str]]) -> tuple[int, str] | None:
    for level, packages in enumerate(plan):
        for package in packages:
            if module == package or module.startswith(package + "."):
                return level, package
    return None


def violations(plan: list[list[str]]) -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        here = module_name(path)
        if here == "featurelens":
            continue
        mine = place(here, plan)
        assert mine is not None, f"{here} is on no floor: add its package to docs/architecture.md"
        for target in sorted(imported(path)):
            theirs = place(target, plan)
            if theirs is None:  # the root package (hookimpl, version) or a name in it
                continue
            up = theirs[0] > mine[0]
            sideways = theirs[0] == mine[0] > 0 and theirs[1] != mine[1] and mine[0] != len(plan) - 1
            if up or sideways:
                found.append(f"{here} ({mine[1]}) imports {target} ({theirs[1]})")
    return found


def test_no_import_goes_up_or_sideways() -> None:
    assert violations(floors()) == []


def test_the_checker_sees_an_upward_import() -> None:
    """A plan with the core above the LLM layer must be reported, or the test proves nothing."""
    plan = floors()
    llm = next(i for i, packages in enumerate(plan) if "featurelens.llm" in packages)
    upside_down = [plan[llm], *[p for i, p in enumerate(plan) if i != llm]]
    assert any("(featurelens.llm) imports featurelens.core" in v for v in violations(upside_down))


def test_the_root_package_imports_nothing_above_the_core() -> None:
    """``import featurelens`` offers open_store, the notebook helpers and steering(): the
    core floor and interventions, just above it."""
    base = floors()[:2]
    assert base[1] == ["featurelens.interventions"]
    for target in imported(PACKAGE / "__init__.py"):
        assert target == "featurelens" or place(target, base) is not None, target


PLUGIN_SOURCES = [
    *sorted((ROOT / "examples").rglob("*.py")),
    *sorted((ROOT / "community").rglob("*.py")),
    *sorted((PACKAGE / "registry" / "template").glob("*.py.txt")),
]


@pytest.mark.parametrize("path", PLUGIN_SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_plugins_import_only_the_public_module(path: Path) -> None:
    """Read as text: the template has placeholders that are not Python yet."""
    text = path.read_text(encoding="utf-8")
    names = re.findall(r"^\s*(?:from|import)\s+(featurelens(?:\.\w+)*)(?!\w)", text, re.M)
    assert names, f"{path.name} imports nothing from featurelens; is it still a plugin?"
    for name in names:
        assert name in ("featurelens", "featurelens.api"), (
            f"{path.name} imports {name}; plugins import only featurelens and featurelens.api")


def test_the_public_module_offers_what_plugins_need() -> None:
    import featurelens.api as api

    for name in api.__all__:
        assert getattr(api, name) is not None, name
    with pytest.raises(AttributeError, match="docs/plugins.md"):
        api.nothing_like_this  # noqa: B018


def named_upward(plan: list[list[str]]) -> dict[str, set[str]]:
    """Modules that name a module on a higher floor in a string (imported at run time by
    name: built-in plugin lists, lazy factories), with the names."""
    found: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        here = module_name(path)
        mine = place(here, plan)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
                continue
            if not re.fullmatch(r"featurelens(\.\w+)+(:\w+)?", node.value):
                continue
            theirs = place(node.value.split(":")[0], plan)
            if mine and theirs and theirs[0] > mine[0]:
                found.setdefault(here, set()).add(node.value)
    return found


def test_only_the_builtin_list_names_modules_upstairs() -> None:
    """The one arrow back up: the host's list of built-in plugins, which it loads through
    the same path as third-party ones (so the core never imports a method directly)."""
    assert sorted(named_upward(floors())) == ["featurelens.core.host.manager"]


def import_graph() -> dict[str, set[str]]:
    """File -> the featurelens files it imports (a package's own __init__ excluded)."""
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        targets = set()
        for target in imported(path):
            while target not in files and "." in target:
                target = target.rpartition(".")[0]
            if target in files and target != name and not name.startswith(target + "."):
                targets.add(target)
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one file (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    found.append(sorted(group))
    return found


def test_no_circles_between_files() -> None:
    assert cycles(import_graph()) == []


def test_the_circle_finder_sees_a_circle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
