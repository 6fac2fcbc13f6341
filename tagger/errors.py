"""The exception hierarchy: every error a user can meet says what went wrong and what to do."""


class TaggerError(Exception):
    """Base class of every error MOT Tagger raises on purpose."""


class ConfigError(TaggerError):
    """A setting (environment variable or config file) is missing or invalid."""


class DataError(TaggerError):
    """A training or evaluation file is malformed; the message names the file and the line."""

    def __init__(self, path: str, line: int | None, reason: str):
        self.path, self.line, self.reason = str(path), line, reason
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {reason}")


class ModelError(TaggerError):
    """A model file is missing, corrupt, tampered with, or incompatible."""


class IntegrityError(ModelError):
    """A model file's SHA-256 does not match its metadata: it is refused, never unpickled."""


class HelpdeskError(TaggerError):
    """A helpdesk API call failed."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None,
                 permanent: bool = False):
        super().__init__(message)
        self.status, self.retry_after, self.permanent = status, retry_after, permanent


class WebhookError(TaggerError):
    """An incoming webhook is rejected; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason
