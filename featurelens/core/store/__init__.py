"""The feature store: one DuckDB file, its migrations, and taking turns on it.

``database`` holds :class:`Store`; ``location`` finds the file without importing DuckDB."""
