"""The host: hook specifications, the plugin manager, pipeline stages and the feature store."""
