"""``featurelens plugins ...``: list, install, uninstall, search and create plugins.

Installing runs pip in the interpreter that runs featurelens (``sys.executable -m
pip``), so a plugin always lands in the environment that will load it; afterwards the
host is rebuilt and the command reports what the new plugin registered.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import click

import featurelens
from featurelens.core.errors import PluginError
from featurelens.core.host.manager import Host, get_host, reset_host
from featurelens.registry import index as plugin_index
from featurelens.registry.scaffold import write_plugin


@click.group("plugins")
def plugins_group() -> None:
    """List, install, find and create featurelens plugins."""


def _plugin_rows(host: Host, show_all: bool) -> list[dict]:
    rows = []
    for info in host.plugins():
        if info.builtin and not show_all:
            continue
        components = [{"kind": c.kind, "name": c.name, "description": c.description}
                      for c in host.registry.by_plugin(info.name)]
        rows.append({"name": info.name, "package": info.package, "version": info.version,
                     "builtin": info.builtin, "hooks": info.hooks, "components": components})
    return rows


def _echo_plugin(row: dict) -> None:
    origin = "built-in" if row["builtin"] else f"{row['package']} {row['version']}"
    click.echo(f"{row['name']} ({origin})")
    click.echo(f"  hooks: {', '.join(row['hooks']) or '-'}")
    for c in row["components"]:
        desc = f" - {c['description']}" if c["description"] else ""
        click.echo(f"  {c['kind'].replace('_', ' ')}: {c['name']}{desc}")


@plugins_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--all", "show_all", is_flag=True, help="Include built-in plugins.")
def plugins_list(as_json: bool, show_all: bool) -> None:
    """Show installed plugins, the hooks they implement and the components they added."""
    host = get_host()
    rows = _plugin_rows(host, show_all)
    from featurelens.core.redaction import redact

    # a plugin's error text can quote its environment; keys never reach the terminal
    failures = [{"name": f.name, "stage": f.stage, "error": redact(f.error)} for f in host.failures]
    if as_json:
        click.echo(json.dumps({"plugins": rows, "failures": failures}, indent=2))
        return
    if not rows:
        click.echo("No plugins installed (use --all to include built-ins).")
    for row in rows:
        _echo_plugin(row)
    for failure in failures:
        click.echo(f"{failure['name']} (not loaded, {failure['stage']}): {failure['error']}")


def _pip(*args: str) -> None:
    """Run pip in this interpreter, its output going straight to the user."""
    if importlib.util.find_spec("pip") is None:
        raise PluginError(f"The Python running featurelens ({sys.executable}) has no pip; "
                          "add it with `python -m ensurepip`, then run the command again.")
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    click.echo("$ " + " ".join(command), err=True)
    status = subprocess.call(command)
    if status != 0:
        raise PluginError(f"pip {args[0]} failed with exit status {status}; its message is above "
                          "(a misspelt name, no network, or a version conflict), fix that and retry.")


def _install_argument(name: str) -> str:
    """What to give pip for ``name``: a path, an index entry's package, or ``name`` itself."""
    if Path(name).exists():
        return str(Path(name).resolve())
    entry = plugin_index.find(name)
    if entry is None:
        return name
    if entry.status == "planned":
        raise PluginError(f"{entry.package} is only planned in the plugin index (nobody has "
                          "published it yet); see `featurelens plugins search` for what exists.")
    if not entry.compatible():
        raise PluginError(f"{entry.package} is made for featurelens {entry.featurelens}, not "
                          f"{featurelens.__version__}; install a featurelens in that range.")
    if entry.status in plugin_index.IN_REPOSITORY:
        path = Path(entry.install or "")
        if not path.is_dir():
            raise PluginError(f"{entry.package} ships with the featurelens sources, not on PyPI; "
                              f"run this from the root of a featurelens clone, or pass the path "
                              f"to {entry.install}.")
        return str(path.resolve())
    return entry.install or entry.package


@plugins_group.command("install")
@click.argument("name")
@click.option("--upgrade", "-U", is_flag=True, help="Upgrade it if already installed.")
@click.option("--editable", "-e", is_flag=True, help="Install a local folder in editable mode.")
def plugins_install(name: str, upgrade: bool, editable: bool) -> None:
    """Install plugin NAME: an index name, a pip requirement, or a local folder."""
    before = set(get_host().infos)
    argument = _install_argument(name)
    _pip("install", *(["--upgrade"] if upgrade else []), *(["-e"] if editable else []), argument)
    importlib.invalidate_caches()
    reset_host()
    host = get_host()
    added = [row for row in _plugin_rows(host, False) if row["name"] not in before]
    for row in added:
        click.echo("Installed plugin:")
        _echo_plugin(row)
    for failure in host.failures:
        click.echo(failure.message(), err=True)
    if not added and not upgrade:
        click.echo(f"pip installed {name}, but no new featurelens plugin appeared: it was already "
                   "installed, or its package has no 'featurelens' entry point.", err=True)


@plugins_group.command("uninstall")
@click.argument("name")
def plugins_uninstall(name: str) -> None:
    """Uninstall plugin NAME (its plugin name as listed, or its package name)."""
    key = plugin_index.normalise(name)
    if key == "featurelens":
        raise PluginError("featurelens itself cannot be uninstalled through `plugins uninstall`; "
                          "use `pip uninstall featurelens`.")
    host = get_host()
    package = None
    for info in host.plugins():
        if key in (plugin_index.normalise(info.name), plugin_index.normalise(info.package or "")):
            if info.builtin:
                raise PluginError(f"{info.name} is built into featurelens and cannot be "
                                  "uninstalled on its own.")
            package = info.package
            break
    if package is None:
        entry = plugin_index.find(name)
        package = entry.package if entry is not None else name
    if plugin_index.normalise(package) == "featurelens":
        raise PluginError("featurelens itself cannot be uninstalled through `plugins uninstall`; "
                          "use `pip uninstall featurelens`.")
    try:
        metadata.distribution(package)
    except metadata.PackageNotFoundError:
        raise PluginError(f"No plugin or package {name!r} is installed; "
                          "`featurelens plugins list` shows what is.") from None
    _pip("uninstall", "--yes", package)
    importlib.invalidate_caches()
    reset_host()
    click.echo(f"Uninstalled {package}.")


@plugins_group.command("search")
@click.argument("text", required=False, default="")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins_search(text: str, as_json: bool) -> None:
    """Search the community plugin index for TEXT (every word must match); no TEXT lists all."""
    found = plugin_index.search(text)
    if as_json:
        click.echo(json.dumps([entry.as_dict() for entry in found], indent=2))
        return
    if not found:
        click.echo(f"No plugin in the index matches {text!r}.")
    for entry in found:
        fits = "compatible" if entry.compatible() else f"needs featurelens {entry.featurelens}"
        click.echo(f"{entry.name}  ({entry.package}; {entry.status}; {fits})")
        click.echo(f"  {entry.description}")
        click.echo(f"  hooks: {', '.join(entry.hooks)}")


@plugins_group.command("new")
@click.argument("name")
@click.option("--directory", "-d", type=click.Path(file_okay=False, path_type=Path),
              default=Path("."), show_default=True, help="Where to create the package folder.")
def plugins_new(name: str, directory: Path) -> None:
    """Create a ready-to-install plugin package featurelens-NAME with a passing test."""
    if not directory.is_dir():
        raise PluginError(f"The folder {directory} does not exist; create it or pass another "
                          "--directory.")
    root = write_plugin(name, directory)
    click.echo(f"Created {root}. Next:\n  cd {root}\n  pip install -e '.[test]'\n"
               "  python -m pytest\n  featurelens plugins list")
