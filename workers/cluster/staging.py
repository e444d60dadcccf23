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
    JobRequest,
    MusicRequest,
    VideoRequest,
)

SHIPPED = (ImageRequest, VideoRequest, MusicRequest)
"""Requests whose one output file is made on the node and written on the user's machine."""
SIDECAR_SUFFIX = ".json"


def runs_on_users_machine(request: object) -> bool:
    """True for requests tied to files or stores on the user's machine: a brush project, a stored
    conversation, or any file this machine has that the request names (an init image, a LoRA,
    a model folder or checkpoint): another machine would not find it."""
    if isinstance(request, (BrushBaseRequest, BrushRenderRequest)):
        return True
    if isinstance(request, ChatRequest) and request.conversation_id:
        return True
    named = [getattr(request, name, "") for name in ("model", "init_image")]
    named += [part.strip().rsplit(":", 1)[0] for part in getattr(request, "loras", "").split(",")]
    return any(_local_file(value) for value in named if value)


def _local_file(value: str) -> bool:
    if not any(sep in value for sep in ("/", "\\", ".")):
        return False  # a catalog id ("demo-sd"); a hub id ("org/name") is no file here either
    try:
        return Path(value).expanduser().exists()
    except (OSError, ValueError):
        return False


def staged_request(request: JobRequest, job_id: str, staging: Path) -> JobRequest:
    """The request with its output pointed into ``staging`` (same suffix, so the same format)."""
    if not isinstance(request, SHIPPED):
        return request
    suffix = Path(request.out_path).suffix if request.out_path else ""
    return dataclasses.replace(request, out_path=str(staging / f"{job_id}{suffix}"))


def sidecar_of(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


def local_destination(request: object, job_id: str, staged_path: str, first: Path | None = None) -> Path:
    """Where a shipped output lands here: the user's ``out_path`` (else the outputs folder), and
    for the further images of a batch (``JOBID-2.png`` in staging) the same name as locally
    (``NAME-2.png`` beside ``first``, the job's first destination)."""
    staged = Path(staged_path)
    if first is None:
        requested = getattr(request, "out_path", "")
        if requested:
            path = Path(requested).expanduser()
            first = path if path.suffix else path.with_suffix(staged.suffix)
        else:
            first = output_path("", job_id, staged.suffix)
    rest = staged.stem[len(job_id) :] if staged.stem.startswith(job_id) else ""
    return first.with_name(f"{first.stem}{rest}{first.suffix}") if rest else first


def write_here(destination: Path, data: bytes, sidecar: bytes | None) -> None:
    """The sidecar first, then the file: a file present means its parameters are too."""
    if sidecar is not None:
        write_bytes(sidecar_of(destination), sidecar)
    write_bytes(destination, data)
