"""The historian in the running adapter: the feed from the host's change stream and the queries the API asks.

The storage is the ``historian`` library (docs/historian.md); this package only decides *what* of the
host's change stream is history (:mod:`.feed`), how the adapter configures the store (:mod:`.settings`),
and how a REST question about a tag, a range or a batch becomes a store query (:mod:`.queries`).
"""

from .feed import HistoryFeed, sample_of
from .queries import BatchNotFoundError, HistoryQueries, TagNotFoundError, TagRef, Window
from .settings import HistorianSettings, open_store

__all__ = ["BatchNotFoundError", "HistorianSettings", "HistoryFeed", "HistoryQueries", "TagNotFoundError", "TagRef",
           "Window", "open_store", "sample_of"]
