"""Outputs made on a node, written on the user's machine.

A job that runs on another machine cannot write the user's path: that machine has another disk.
So the actor points the request's ``out_path`` into a staging folder of its own node, ships the
finished file (and its JSON sidecar) through Ray's object store when the job says ``Output``, and
the supervisor writes the bytes at the user's path, atomically (``workers.atomic``): a job that
dies half way leaves nothing on the user's disk. The PNG's parameters are inside its bytes (the
``parameters`` and ``hearth`` text chunks), so they arrive with it.

Requests that read or write the user's own files (a brush project, a photo, a stored
conversation) do not travel: they run on the user's own node (``runs_on_users_machine``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from workers.atomic import write_bytes
from workers.outputs import output_path
from workers.protocol import (
    BrushBaseRequest,
    BrushRenderRequest,
    ChatRequest,
    ImageRequest,
    MusicRequest,
    VideoRequest,
)

SHIPPED = (ImageRequest, VideoRequest, MusicRequest)
"""Requests whose one output file is made on the node and written on the user's machine."""
SIDECAR_SUFFIX = ".json"


def runs_on_users_machine(request: object) -> bool:
    """True for requests tied to files or stores on the user's machine."""
    if isinstance(request, (BrushBaseRequest, BrushRenderRequest)):
        return True
    return isinstance(request, ChatRequest) and bool(request.conversation_id)


def staged_request(request: object, job_id: str, staging: Path) -> object:
    """The request with its output pointed into ``staging`` (same suffix, so the same format)."""
    if not isinstance(request, SHIPPED):
        return request
    suffix = Path(request.out_path).suffix if request.out_path else ""
    return dataclasses.replace(request, out_path=str(staging / f"{job_id}{suffix}"))


def sidecar_of(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


def local_destination(request: object, job_id: str, staged_path: str) -> Path:
    """Where a shipped output lands here: the user's ``out_path``, else the outputs folder."""
    suffix = Path(staged_path).suffix
    requested = getattr(request, "out_path", "")
    if requested:
        path = Path(requested).expanduser()
        return path if path.suffix else path.with_suffix(suffix)
    return output_path("", job_id, suffix)


def write_here(destination: Path, data: bytes, sidecar: bytes | None) -> None:
    """The sidecar first, then the file: a file present means its parameters are too."""
    if sidecar is not None:
        write_bytes(sidecar_of(destination), sidecar)
    write_bytes(destination, data)
