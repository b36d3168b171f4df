"""The metadata store: tables, engine set-up and schema upgrades, and the queries the UI needs."""

from mldeck.store.engine import SCHEMA_REVISION, Store, open_store

__all__ = ["SCHEMA_REVISION", "Store", "open_store"]
