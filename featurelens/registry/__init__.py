"""Name -> component resolution, and the community plugin index."""
