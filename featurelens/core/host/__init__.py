"""The plugin host: hook specifications, protocols, the plugin manager and entry-point loading."""
