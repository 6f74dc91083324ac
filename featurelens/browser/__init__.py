"""The feature browser: read-only queries over the store, HTML rendering shared by
``featurelens serve`` and the static HTML export, and the local HTTP server."""
