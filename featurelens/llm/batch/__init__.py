"""Provider batch APIs: intent before submit, clients, results read as untrusted data, collection."""
