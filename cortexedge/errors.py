"""User-facing error types: anything a user can cause raises one of these.

The CLI turns them into one line on stderr and exit status 2; the library lets them propagate.
"""


class CortexEdgeError(ValueError):
    """A mistake in the user's input (file, shape, option); the message says what and where."""


class RecordingError(CortexEdgeError):
    """A recording file or array fails validation."""


class CheckpointError(CortexEdgeError):
    """A checkpoint is missing, corrupted or does not match its model."""


class ContractError(CortexEdgeError):
    """An exported decoder's metadata is missing, inconsistent or from a newer format."""
