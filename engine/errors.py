"""Errors the engine reports to users. Each message is one line that says what
went wrong and what to do; UIs print str(error) as is."""


class OutlierError(Exception):
    """Base of every error meant for the user (no traceback needed)."""


class CheckpointError(OutlierError):
    """The model folder is missing, incomplete, corrupt or inconsistent."""


class UnsupportedModelError(OutlierError):
    """The architecture or expert format is not something the engine can stream."""


class BudgetError(OutlierError):
    """The expert-cache budget cannot hold what one MoE layer needs."""


class ExpertReadError(OutlierError):
    """Reading expert bytes from the SSD failed (I/O error, file shrunk or replaced)."""


class EngineStateError(OutlierError):
    """A request that needs a loaded model arrived before one was loaded."""


class RequestError(OutlierError):
    """A generation request the model cannot run: bad settings, or a prompt that is
    empty or longer than the model's context."""


class PromptTooLongError(RequestError):
    """The prompt does not fit the model's context window."""
