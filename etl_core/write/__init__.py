"""Writing to OpenSearch: bulk loading with dead letters, and the sink (indices, aliases, _bulk)."""
