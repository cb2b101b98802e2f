"""Errors a user can act on.

Every exception the studio raises on purpose derives from :class:`StudioError` and its
``str()`` is one plain-language sentence (what went wrong and how to fix it). The CLI prints
that sentence and exits non-zero; the pages show it with ``st.error``. Anything else that
escapes is a bug.
"""


class StudioError(Exception):
    """A problem the user can fix; ``str(err)`` is the message to show them."""


class SpecError(StudioError):
    """A run spec value is not allowed."""


class DatasetError(StudioError):
    """A data file cannot be used, or a data set does not exist."""


class TrainingError(StudioError):
    """Training could not start or stopped with a reason the user can act on."""


class BundleError(StudioError):
    """A model bundle cannot be read or cannot predict on the given rows."""


class JobError(StudioError):
    """A job does not exist or cannot be changed in its current state."""
