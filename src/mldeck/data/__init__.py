"""Data: ingest, validation and profiling on polars, quarantine, the incoming-data watcher."""
