"""What can go wrong with an upload, in the engine's words. handlers/errors.py maps each to a status."""
from __future__ import annotations


class UploadError(Exception):
    """Base of every client-visible engine error. `message` is safe to show to users."""

    def __init__(self, message: str, *, retry_after_s: float | None = None, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s
        self.details = details


class InvalidUpload(UploadError):
    """The request describes an upload we cannot accept (bad size, name, metadata)."""


class UploadTooLarge(UploadError):
    """Larger than the workspace allows, or more bytes than the declared length."""


class UploadNotFound(UploadError):
    pass


class UploadGone(UploadError):
    """Expired (Notion's 1-hour limit) or terminated: the client must start over."""


class OffsetMismatch(UploadError):
    pass


class ChecksumMismatch(UploadError):
    pass


class UploadBusy(UploadError):
    """Another request is writing this upload right now."""


class UploadFailed(UploadError):
    """Notion did not take the file. `details['can_resume']` tells whether trying again can help."""


class NotionRejected(UploadError):
    """Notion refused the request as invalid (a 4xx); retrying the same thing will not help."""


class InsufficientStorage(UploadError):
    """The relay's spool disk is full: what was counted is kept, the rest must be sent again later."""


class ServiceUnavailable(UploadError):
    """Temporarily unable to take uploads: Notion's breaker is open, Redis is away, or we are full."""


class Unauthorized(UploadError):
    """No valid upload token or grant."""


class Forbidden(UploadError):
    """A valid upload grant that does not allow this upload (size, type, destination, count)."""


class DestinationNotAllowed(Forbidden):
    """A page or database that is not on the relay's list of destinations."""


class QuotaExceeded(UploadError):
    """A token's concurrent uploads or bytes per hour are used up; details say which."""


class UnsupportedFileType(UploadError):
    """Notion does not take files of this kind."""
