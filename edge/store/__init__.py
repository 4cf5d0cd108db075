"""Session results in SQLite (WAL). No raw media unless the config says `store_media: true`."""
from edge.store.results import ResultStore

__all__ = ["ResultStore"]
