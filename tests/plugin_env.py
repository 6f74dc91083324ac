"""A throwaway Python environment that sees featurelens but installs plugins privately.

Tests install plugins for real (pip, a real .dist-info with a real entry point) without
touching the shared .venv: the throwaway venv has no packages of its own and reaches
the .venv's site-packages through a ``.pth`` line, so pip installs and uninstalls only
inside it and finds featurelens already satisfied.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path


@dataclass
class PluginEnv:
    root: Path
    purelib: Path  #: where pip installs plugins in this environment

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    def run(self, *args: str, check: bool = True, env: dict[str, str] | None = None,
            timeout: int = 300) -> subprocess.CompletedProcess:
        """Run this environment's python with ``args``."""
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("FEATURELENS_")}
        full_env.update(env or {})
        proc = subprocess.run([str(self.python), *args], capture_output=True, text=True,
                              env=full_env, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def featurelens(self, *args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
        """The featurelens command line, run by this environment's interpreter."""
        return self.run("-m", "featurelens", *args, check=check, **kw)

    def plugins(self) -> dict:
        return json.loads(self.featurelens("plugins", "list", "--json").stdout)


def _purelib(python: Path | str) -> str:
    return subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True).stdout.strip()


def make_plugin_env(root: Path, base: Path | None = None) -> PluginEnv:
    """Create the environment at ``root`` (about a second: no pip is copied in).

    It shares the packages of this interpreter's environment, or of the virtual
    environment ``base`` (made by its interpreter, so the Python versions match).
    """
    maker = sys.executable if base is None else str(base / "bin" / "python")
    subprocess.run([maker, "-m", "venv", "--without-pip", str(root)], check=True)
    env = PluginEnv(root, Path(_purelib(root / "bin" / "python")))
    shared = sysconfig.get_paths()["purelib"] if base is None else _purelib(maker)
    # addsitedir (not a bare path) so the shared dir's own .pth files, such as the
    # editable featurelens install, are processed too.
    Path(env.purelib, "zz_shared_venv.pth").write_text(
        f"import site; site.addsitedir({shared!r})\n", encoding="utf-8")
    return env
