"""Fleet server: PKI, key vault, message store, broker, ingest, export and forget."""
