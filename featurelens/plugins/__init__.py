"""Built-in plugins: model backends, dictionaries, corpus sources and commands.

Each module here is registered with the plugin manager exactly as a third-party plugin
is (see ``featurelens.core.host.manager.BUILTIN_PLUGINS``).
"""
