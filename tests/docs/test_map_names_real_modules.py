"""The map cannot drift: every module docs/architecture.md or a docstring names exists.

docs/architecture.md draws the code as indented trees in fenced blocks (a line ending in
``/`` opens a folder, deeper lines name what is inside it; a line may also start with a
full ``featurelens/...`` path) and names modules in prose as ``featurelens.x.y`` or
``x/y.py``. Docstrings of the package name modules the same two ways. Each name must
resolve to a file or folder of the package (or, for a dotted name, to an attribute of
an existing module), so a move that forgets the map fails here.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "featurelens"
DOC = ROOT / "docs" / "architecture.md"
ENTRY = re.compile(r"^(\s*)([\w./*-]+(?:,\s*[\w./*-]+)*)(?:\s{2,}|\s*$)")
DOTTED = re.compile(r"(?<![\w.])featurelens(?:\.[a-z_][a-z0-9_]*)+")
PATHLIKE = re.compile(r"(?<![\w./-])((?:featurelens/)?(?:[a-z_][a-z0-9_]*/)+[a-z_][a-z0-9_]*\.py)\b")


def exists(relative: str) -> bool:
    """``relative`` (a file, folder or glob under the repository) names something real."""
    if "*" in relative:
        return any(ROOT.glob(relative))
    return (ROOT / relative.rstrip("/")).exists()


def fenced_blocks(text: str) -> list[list[str]]:
    """The lines of every fenced block without a language (the trees; not ```floors)."""
    blocks: list[list[str]] = []
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("```"):
            if current is None:
                current = [] if line.strip() == "```" else None
                if current is None:
                    current = ["<skip>"]
            else:
                if current[:1] != ["<skip>"]:
                    blocks.append(current)
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def tree_entries(text: str) -> list[str]:
    """Every path a fenced tree of ``text`` names, made absolute from its folders."""
    found: list[str] = []
    for block in fenced_blocks(text):
        stack: list[tuple[int, str]] = []
        for line in block:
            match = ENTRY.match(line)
            if not match or not line.strip():
                continue
            indent = len(match.group(1))
            names = [n.strip() for n in match.group(2).split(",")]
            while stack and stack[-1][0] >= indent:
                stack.pop()
            if names[0].startswith("featurelens"):
                base = ""
                stack = []
            elif stack:
                base = stack[-1][1]
            else:
                continue  # a continuation line of prose inside the block
            for name in names:
                if not re.search(r"\.(py|json|sql|md|txt)$|/$|\*", name):
                    break  # description text, not a name
                if not name.endswith("/"):
                    found.append(base + name)
            last = names[-1]
            if last.endswith("/"):
                stack.append((indent, base + last))
    return found


def resolves(dotted: str) -> bool:
    """A dotted name is a module or package, or an attribute defined in one."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        path = ROOT.joinpath(*parts[:cut])
        source = path.with_suffix(".py") if path.with_suffix(".py").is_file() else path / "__init__.py"
        if source.is_file():
            if cut == len(parts):
                return True
            # module.name or module.Class.member: the name must appear in that module
            return cut >= len(parts) - 2 and re.search(rf"\b{parts[cut]}\b", source.read_text(encoding="utf-8")) is not None
    return False


def relative_mod_refs(path: Path, doc: str) -> list[str]:
    """``:mod:`.name``` and ``:mod:`name``` references that name no module beside ``path``."""
    bad = []
    for name in re.findall(r":mod:`([.\w]+)`", doc):
        if name.startswith("featurelens"):
            continue
        folder = path.parent
        name = name.lstrip(".") if name.startswith(".") else name
        if not ((folder / f"{name}.py").is_file() or (folder / name / "__init__.py").is_file()):
            bad.append(name)
    return bad


def test_every_module_the_map_draws_exists() -> None:
    missing = [name for name in tree_entries(DOC.read_text(encoding="utf-8")) if not exists(name)]
    assert missing == [], f"docs/architecture.md names what does not exist: {missing}"


def test_every_module_the_map_names_in_prose_exists() -> None:
    text = DOC.read_text(encoding="utf-8")
    dotted = sorted({name for name in DOTTED.findall(text) if not resolves(name)})
    paths = sorted({p for p in PATHLIKE.findall(text)
                    if not exists(p) and not exists(f"featurelens/{p}") and not any(ROOT.glob(f"featurelens/**/{p}"))})
    assert (dotted, paths) == ([], [])


def docstrings(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = [tree, *(n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)))]
    return [doc for node in nodes if (doc := ast.get_docstring(node))]


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_docstrings_name_modules_that_exist(path: Path) -> None:
    bad = []
    for doc in docstrings(path):
        bad += [name for name in DOTTED.findall(doc) if not resolves(name.rstrip("."))]
        bad += relative_mod_refs(path, doc)
        bad += [p for p in PATHLIKE.findall(doc)
                if not exists(p) and not any(ROOT.glob(f"featurelens/**/{p}")) and not exists(f"featurelens/{p}")
                and not p.startswith(("tests/", "benchmarks/", "scripts/", "docs/", "examples/", "community/"))]
    assert bad == [], f"{path.relative_to(ROOT)} names modules that do not exist: {bad}"


def test_the_checks_see_a_missing_module(tmp_path: Path) -> None:
    """A map naming a moved module must fail, or these tests prove nothing."""
    text = "```\nfeaturelens/\n  core/\n    store.py   gone\n    errors.py  here\n```\n"
    entries = tree_entries(text)
    assert entries == ["featurelens/core/store.py", "featurelens/core/errors.py"]
    assert [e for e in entries if not exists(e)] == ["featurelens/core/store.py"]
    assert not resolves("featurelens.core.store_location")
    assert relative_mod_refs(PACKAGE / "core" / "store" / "turns.py", ":mod:`.database` and :mod:`.store`") == ["store"]
    assert resolves("featurelens.core.store.location")
