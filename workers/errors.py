"""The small set of error kinds the UI knows how to show, and the exceptions that carry them."""

from __future__ import annotations

from enum import StrEnum


class ErrorKind(StrEnum):
    """Why a job failed; each kind has its own wording and remedy in the UI."""

    bad_input = "bad_input"
    """The request itself is wrong (empty prompt, impossible size); fix the input and resubmit."""
    missing_model = "missing_model"
    """The model named by the request cannot be found or loaded."""
    out_of_memory = "out_of_memory"
    """The job could not fit in the memory the arbiter could grant."""
    worker_crashed = "worker_crashed"
    """The worker process died mid-job; it is restarted automatically."""
    node_lost = "node_lost"
    """The cluster node running the job died or left mid-job (``workers.cluster``); nothing was written."""
    revoked = "revoked"
    """The arbiter took the job's memory back and the job could not continue."""
    interrupted = "interrupted"
    """The app stopped while the job was running."""
    internal = "internal"
    """A bug in Hearth; the traceback is kept for the report."""


class HearthError(Exception):
    """An error with a kind the UI can show. Raise subclasses, catch once at the job boundary."""

    kind: ErrorKind = ErrorKind.internal


class BadInput(HearthError, ValueError):
    """``field``: the request field at fault, when one is (the HTTP API names it as OpenAI's ``param``)."""

    kind = ErrorKind.bad_input

    def __init__(self, message: str = "", *, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class MissingModel(HearthError):
    kind = ErrorKind.missing_model


class OutOfMemory(HearthError):
    kind = ErrorKind.out_of_memory


class JobCancelled(Exception):  # noqa: N818 - it is a control-flow signal, not an error
    """Raised at a step boundary when the job's cancel token is set."""

    def __init__(self, at_step: int = -1):
        super().__init__(f"cancelled at step {at_step}")
        self.at_step = at_step
