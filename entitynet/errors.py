"""Errors a user can cause. The CLI prints them as one line and exits non-zero.

Everything else is a bug and keeps its traceback. Every user error lives here, so a runner in
another process (Beam's workers) can rebuild it from its text (`beam_pipelines.common.user_error`).
"""


class EntityNetError(Exception):
    """A problem with the user's input, configuration or environment, with the fix in the message."""


class ConfigError(EntityNetError):
    """A bad flag, config value or identifier."""


class KGError(EntityNetError):
    """The knowledge graph could not be read: malformed file, unreachable or misbehaving endpoint."""


class KGDataError(KGError):
    """A value in the knowledge graph that no reader can use (fix the data; asking again will not help)."""


class OutputError(EntityNetError):
    """An output location cannot be written."""


class SearchError(EntityNetError):
    """A search backend that cannot be used: bad key, unreachable after retries, malformed answers."""


class StorageError(EntityNetError):
    """A file in a bucket or on disk that cannot be read: access denied, a store that keeps failing."""
