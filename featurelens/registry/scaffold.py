"""``featurelens plugins new NAME``: write a ready-to-install plugin package.

The package has the ``featurelens`` entry point, a module with a working hook
implementation, and a test that passes once the package is installed, so an author
starts from something green and changes it.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from string import Template

import featurelens
from featurelens.core.errors import PluginError

_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


def plugin_names(name: str) -> tuple[str, str]:
    """``("foo-bar", "featurelens_foo_bar")`` for ``foo-bar`` or ``featurelens-foo-bar``."""
    short = name.removeprefix("featurelens-")
    if not _NAME.match(short):
        raise PluginError(
            f"{name!r} is not a usable plugin name; use lowercase letters, digits and single "
            "dashes, starting with a letter (for example 'my-scorer')."
        )
    return short, "featurelens_" + short.replace("-", "_")


def compatible_spec(version: str = featurelens.__version__) -> str:
    """The featurelens versions a new plugin may claim: this minor series (``>=0.1,<0.2``)."""
    major, minor = (int(part) for part in version.split(".")[:2])
    return f">={major}.{minor},<{major}.{minor + 1}" if major == 0 else f">={major}.{minor},<{major + 1}"


def write_plugin(name: str, directory: Path) -> Path:
    """Create ``directory/featurelens-NAME`` and return it; refuses to overwrite."""
    short, module = plugin_names(name)
    root = directory / f"featurelens-{short}"
    if root.exists() and any(root.iterdir()):
        raise PluginError(f"{root} already exists and is not empty; choose another name or "
                          "--directory, or remove it first.")
    values = {"name": short, "module": module, "api": str(featurelens.PLUGIN_API_VERSION),
              "compatible": compatible_spec()}
    template = resources.files("featurelens.registry") / "template"
    files = {
        "pyproject.toml": "pyproject.toml.txt",
        "README.md": "README.md.txt",
        f"src/{module}/__init__.py": "plugin.py.txt",
        f"tests/test_{module}.py": "test_plugin.py.txt",
    }
    for target, source in files.items():
        text = Template((template / source).read_text(encoding="utf-8")).substitute(values)
        path = root / target
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root
