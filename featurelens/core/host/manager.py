"""The plugin manager: built-ins, entry-point discovery, failures, and the registry.

Built-in plugins are plain modules registered with the same pluggy manager, through the
same hooks, as third-party ones. Third-party plugins are found through the
``featurelens`` entry-point group. A plugin that fails to import, declares an API
version this host does not implement, implements an unknown hook, or fails in one of
its start-up hooks (raises, calls ``sys.exit``, raises ``KeyboardInterrupt``, or runs
past the time limit: :func:`~featurelens.core.host.entry_points.call_isolated`) is
recorded as a :class:`PluginFailure` and left out; nothing it did is kept, and
everything else keeps working.
"""

from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import Any, Iterable

import pluggy

import featurelens
from featurelens.core.errors import FeaturelensError, PluginError
from featurelens.core.host import hookspecs
from featurelens.core.host.entry_points import call_isolated, load_entry_point
from featurelens.registry.components import KINDS, Registry, split_llm_spec

PROJECT = "featurelens"
ENV_LOAD_PLUGINS = "FEATURELENS_LOAD_PLUGINS"

#: Modules that hold the built-in components. Each one is a plugin like any other.
BUILTIN_PLUGINS: tuple[str, ...] = (
    "featurelens.plugins.sql_command",
    "featurelens.plugins.model_backends",
    "featurelens.plugins.corpus_sources",
    "featurelens.plugins.extract_commands",
    "featurelens.llm.providers.builtin",
    "featurelens.llm.offline",
    "featurelens.plugins.vllm_registration",
    "featurelens.plugins.labeling_commands",
    "featurelens.plugins.batch_commands",
    "featurelens.plugins.app_commands",
    "featurelens.labelers.explainers",
    "featurelens.scorers",
    "featurelens.plugins.scoring_commands",
    "featurelens.plugins.estimate_command",
    "featurelens.plugins.dictionaries",
    "featurelens.plugins.formats",
    "featurelens.plugins.dictionary_commands",
    "featurelens.plugins.steering_commands",
    "featurelens.plugins.graph_commands",
)


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that was left out, and why."""

    name: str
    error: str
    stage: str  # "import", "api-version", "hooks", "register" or "select" (an unknown wanted name)
    builtin: bool = False

    def __post_init__(self) -> None:
        # pluggy's validation errors span several lines; the report is one line per plugin.
        object.__setattr__(self, "error", " ".join(self.error.split()).rstrip("."))

    def message(self) -> str:
        """One sentence for stderr: which plugin, what went wrong, how to skip it."""
        if self.builtin:
            return (f"featurelens: built-in plugin {self.name!r} was not loaded ({self.stage}): "
                    f"{self.error}. This is a bug in featurelens; the rest works without it.")
        if self.stage == "select":
            return (f"featurelens: {ENV_LOAD_PLUGINS} names {self.name!r}, but {self.error}; "
                    "fix the name (see featurelens plugins list) or install that plugin.")
        return (
            f"featurelens: plugin {self.name!r} was not loaded ({self.stage}): {self.error}. "
            f"To skip it, set {ENV_LOAD_PLUGINS} to a comma-separated list of the plugins "
            "you want (empty for none), or uninstall it."
        )


@dataclass(frozen=True)
class PluginInfo:
    """What ``featurelens plugins list`` shows about one plugin."""

    name: str
    version: str | None
    package: str | None
    builtin: bool
    hooks: list[str]


@dataclass
class Host:
    """The loaded plugins, their failures and the filled component registry."""

    pm: pluggy.PluginManager
    registry: Registry
    failures: list[PluginFailure] = field(default_factory=list)
    infos: dict[str, PluginInfo] = field(default_factory=dict)

    def plugins(self) -> list[PluginInfo]:
        """Every loaded plugin, built-ins first."""
        return sorted(self.infos.values(), key=lambda info: (not info.builtin, info.name))


def _api_versions(module: Any) -> list[int] | None:
    """The plugin-API versions a plugin declares (``featurelens_api``), or None."""
    declared = getattr(module, "featurelens_api", None)
    if declared is None:
        return None
    if isinstance(declared, int) and not isinstance(declared, bool):
        return [declared]
    if isinstance(declared, (list, tuple, set, frozenset)) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in declared
    ):
        return sorted(declared)
    raise TypeError(f"featurelens_api must be an int or a list of ints, not {declared!r}")


def _normalise(name: str) -> str:
    """Compare plugin and package names the way pip does (case, '-', '_', '.')."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _wanted() -> set[str] | None:
    """The plugins ``FEATURELENS_LOAD_PLUGINS`` asks for (None: all; empty set: none)."""
    raw = os.environ.get(ENV_LOAD_PLUGINS)
    if raw is None:
        return None
    return {_normalise(name.strip()) for name in raw.split(",") if name.strip()}


def _hook_names(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    callers = pm.get_hookcallers(plugin) or []
    return sorted(caller.name for caller in callers)


def _add_plugin(host: Host, plugin: object, name: str, info: PluginInfo) -> None:
    """Register ``plugin`` with pluggy, refusing an API mismatch or an unknown hook."""
    try:
        versions = _api_versions(plugin)
    except TypeError as error:
        host.failures.append(PluginFailure(name, str(error), "api-version"))
        return
    if versions is not None and featurelens.PLUGIN_API_VERSION not in versions:
        supported = ", ".join(str(v) for v in versions)
        host.failures.append(
            PluginFailure(
                name,
                f"it was written for featurelens plugin API {supported}, but this featurelens "
                f"{featurelens.__version__} implements API {featurelens.PLUGIN_API_VERSION}; "
                "install a version of the plugin made for it",
                "api-version",
            )
        )
        return
    try:
        host.pm.register(plugin, name=name)
        host.pm.check_pending()
    except pluggy.PluginValidationError as error:
        if host.pm.is_registered(plugin):
            host.pm.unregister(plugin)
        host.failures.append(PluginFailure(name, str(error), "hooks"))
        return
    except ValueError:  # pluggy: name or object already registered
        if host.pm.is_registered(plugin):
            reason = (f"its module is already loaded as plugin {host.pm.get_name(plugin)!r}; "
                      "two entry points name the same module")
        else:
            other = host.infos.get(name)
            by = f" by {other.package}" if other is not None and other.package else ""
            reason = f"another plugin is already loaded under the name {name!r}{by}"
        host.failures.append(PluginFailure(name, reason, "import"))
        return
    host.infos[name] = PluginInfo(
        info.name, info.version, info.package, info.builtin, _hook_names(host.pm, plugin)
    )


def _entry_points() -> Iterable[metadata.EntryPoint]:
    return metadata.entry_points(group=PROJECT)


def _load_entry_points(host: Host) -> None:
    wanted = _wanted()
    installed: set[str] = set()
    for entry_point in _entry_points():
        dist = getattr(entry_point, "dist", None)
        package = dist.name if dist is not None else None
        names = {_normalise(entry_point.name)} | ({_normalise(package)} if package else set())
        installed |= names
        if wanted is not None and not names & wanted:
            continue
        plugin, reason = load_entry_point(entry_point)
        if reason is not None:
            host.failures.append(PluginFailure(entry_point.name, reason, "import"))
            continue
        version = dist.version if dist is not None else None
        info = PluginInfo(entry_point.name, version, package, False, [])
        _add_plugin(host, plugin, entry_point.name, info)
    for name in sorted((wanted or set()) - installed):
        known = ", ".join(sorted(installed)) or "none"
        host.failures.append(PluginFailure(name, f"no installed plugin or package has that name "
                                                 f"(installed: {known})", "select"))


def _fill_registry(host: Host) -> None:
    """Call every ``register_*`` implementation plugin by plugin, recording provenance.

    A plugin's registrations are kept only if all of its hooks succeed, so a plugin
    that raises half-way leaves nothing behind.
    """
    staged: dict[str, list[tuple[str, str, Any, str, Any]]] = {}
    broken: set[str] = set()
    for kind, hook_name in KINDS.items():
        caller = getattr(host.pm.hook, hook_name)
        for impl in caller.get_hookimpls():  # registration order: built-ins first
            plugin_name = impl.plugin_name
            if plugin_name in broken:
                continue
            calls = staged.setdefault(plugin_name, [])

            def register(name: str, factory: Any, *, description: str = "", info: Any = None,
                         _kind: str = kind, _calls: list = calls) -> None:
                _calls.append((_kind, name, factory, description, info))

            reason = _call_hook(host, plugin_name, hook_name, lambda f=impl.function, r=register: f(register=r))
            if reason is not None:
                broken.add(plugin_name)
                host.failures.append(PluginFailure(plugin_name, reason, "register"))
    for plugin_name, calls in staged.items():
        if plugin_name in broken:
            continue
        try:
            snapshot = {kind: dict(items) for kind, items in host.registry.components.items()}
            for kind, name, factory, description, info in calls:
                host.registry.register(kind, plugin_name, name, factory, description=description,
                                       info=info)
        except FeaturelensError as error:
            host.registry.components = snapshot
            broken.add(plugin_name)
            host.failures.append(PluginFailure(plugin_name, str(error).rstrip("."), "register"))
    for plugin_name in broken:
        plugin = host.pm.get_plugin(plugin_name)
        if plugin is not None:
            host.pm.unregister(plugin)
        host.infos.pop(plugin_name, None)


def _call_hook(host: Host, plugin_name: str, hook_name: str, call: Any) -> str | None:
    """Run one hook implementation; the reason it failed, or ``None``. A third-party
    plugin's hook runs isolated (:func:`call_isolated`: time limit, ``SystemExit`` and
    ``KeyboardInterrupt`` caught); a built-in's runs directly, catching exceptions."""
    info = host.infos.get(plugin_name)
    if info is not None and info.builtin:
        try:
            call()
        except Exception as error:  # noqa: BLE001 - a broken plugin must not take others down
            return f"{type(error).__name__}: {error}"
        return None
    return call_isolated(call, f"its {hook_name} hook")[1]


def build_host(extra_plugins: Iterable[tuple[str, object]] = ()) -> Host:
    """Load built-ins, entry-point plugins and ``extra_plugins``; fill the registry."""
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    host = Host(pm, Registry())
    for module_name in BUILTIN_PLUGINS:
        try:
            module: ModuleType = importlib.import_module(module_name)
        except Exception as error:  # noqa: BLE001 - a broken built-in must not take the CLI down
            host.failures.append(
                PluginFailure(module_name, f"{type(error).__name__}: {error}", "import", True)
            )
            continue
        info = PluginInfo(module_name, featurelens.__version__, "featurelens", True, [])
        _add_plugin(host, module, module_name, info)
    _load_entry_points(host)
    for name, plugin in extra_plugins:
        _add_plugin(host, plugin, name, PluginInfo(name, None, None, False, []))
    _fill_registry(host)
    return host


_HOST: Host | None = None


def get_host() -> Host:
    """The process-wide host, built on first use."""
    global _HOST
    if _HOST is None:
        _HOST = build_host()
    return _HOST


def reset_host() -> None:
    """Forget the process-wide host (tests, and after ``plugins install``)."""
    global _HOST
    _HOST = None


def get_registry() -> Registry:
    """The process-wide component registry."""
    return get_host().registry


def create(kind: str, spec: str, *args: Any, **options: Any) -> Any:
    """Resolve ``spec`` in the registry and build it: ``create("scorer", "simulation")``.

    For LLM providers ``spec`` is ``provider:model`` and the model is passed to the
    factory as its first argument, as :func:`~featurelens.core.host.hookspecs.register_llm_providers`
    documents: ``create("llm_provider", "openai:gpt-4o-mini")``.
    """
    component = get_registry().get(kind, spec)
    if kind == "llm_provider" and not args:
        args = (split_llm_spec(spec)[1],)
    return component.create(*args, **options)


def add_commands(host: Host, cli: Any) -> None:
    """Let every plugin add its CLI commands, built-ins first.

    A plugin that raises, or that adds a command whose name another plugin already
    uses, is reported and left out entirely: none of its commands or components are kept.
    """
    owners: dict[str, str] = {}
    for impl in host.pm.hook.register_commands.get_hookimpls():  # registration order
        before = dict(cli.commands)
        try:
            reason = _call_hook(host, impl.plugin_name, "register_commands",
                                lambda f=impl.function: f(cli=cli))
            if reason is not None:
                raise PluginError(reason)
            added = {n for n, c in cli.commands.items() if before.get(n) is not c}
            taken = sorted(n for n in added if n in before)
            if taken:
                raise PluginError(
                    f"it adds the command {taken[0]!r}, which plugin "
                    f"{owners.get(taken[0], 'featurelens')!r} already provides; uninstall one of "
                    f"them or leave one out with {ENV_LOAD_PLUGINS}"
                )
        except Exception as error:  # noqa: BLE001 - one plugin must not take the CLI down
            cli.commands.clear()
            cli.commands.update(before)
            reason = str(error) if isinstance(error, PluginError) else f"{type(error).__name__}: {error}"
            failure = PluginFailure(impl.plugin_name, reason, "register")
            if failure not in host.failures:  # make_cli may run more than once per host
                host.failures.append(failure)
            _drop(host, impl.plugin_name)
            continue
        for command_name in added:
            owners[command_name] = impl.plugin_name


def _drop(host: Host, plugin_name: str) -> None:
    """Remove a plugin that failed late: its components, its listing, its hooks."""
    for components in host.registry.components.values():
        for name in [n for n, c in components.items() if c.plugin == plugin_name]:
            del components[name]
    host.infos.pop(plugin_name, None)
    plugin = host.pm.get_plugin(plugin_name)
    if plugin is not None:
        host.pm.unregister(plugin)


def describe_hooks() -> dict[str, str]:
    """Hook name -> the first line of its docstring, for listings and docs."""
    out = {}
    for name in dir(hookspecs):
        if name.startswith("register_"):
            doc = (getattr(hookspecs, name).__doc__ or "").strip().splitlines()
            out[name] = doc[0] if doc else ""
    return out
