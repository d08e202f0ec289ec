"""The demo builder's user-facing error."""

from engine.errors import OutlierError


class DemoBuildError(OutlierError):
    """Building the embedded demo model failed; the message says how to retry
    or how to use a local model folder instead (one line, no traceback)."""


class DemoDownloadError(DemoBuildError):
    """The demo model's source could not be downloaded (no network, no pip)."""
