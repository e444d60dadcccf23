"""Download a model from the Hugging Face hub into its cache, resumable, verified, then link it.

huggingface_hub resolves the repo (``HfApi.model_info`` with each file's size and LFS sha256)
and each file's address (``get_hf_file_metadata``: the ``/resolve/`` HEAD with its redirects);
the bytes are fetched here rather than by ``hf_hub_download`` because, since huggingface_hub
1.x, an interrupted ``hf_hub_download`` deletes its partial file: a 7 GB download killed at
90 % would start again from zero. Here a file grows in ``blobs/<etag>.incomplete`` (the cache's
own name for a partial blob, which ``scan_cache_dir`` reports as such) and a restart asks only
for the rest (an HTTP ``Range``). A finished file is checked against the hub's sha256 (LFS) or
git blob hash before it becomes a blob; the snapshot's links and ``refs/<revision>`` are written
only once every file is in, and only then is the model registered. So a cancel, a crash, a full
disk or a corrupt byte leaves at most partial blobs to resume from, never a half model.

What is fetched: every file of the repo, except pickle weights (``.bin``, ``.pt``, ``.ckpt``)
where safetensors are there too, half-precision duplicates (``*.fp16.safetensors``) beside the
full weights, other frameworks' weights (Flax, TensorFlow, ONNX), and in a diffusers pipeline the
single-file checkpoints beside its parts. A repo of several GGUF files needs ``--include`` to
pick one (each is a whole model at another quantization).
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import os
import shutil
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from models.hub_access import HubUnreachable, checked_repo_id, endpoint, hub_call, hub_session
from models.scan import hf_cache_dir
from workers.errors import BadInput, HearthError

CHUNK_BYTES = 256 * 1024
"""Bytes read per write: the most a killed download loses, and how often a cancel is looked at."""
RESUMES = 3
"""Times a connection cut mid-file is resumed (from the bytes on disk) before the download fails."""
DISK_MARGIN_BYTES = 64 * 1024 * 1024
"""Left free after a download, so the disk is not filled to its last byte."""
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
OTHER_FRAMEWORKS = ("*.msgpack", "*.h5", "*.onnx", "*.onnx_data", "*.ot", "*.tflite", "*.mlmodel")
WEIGHT_SUFFIXES = (".safetensors", *PICKLE_SUFFIXES)
VARIANTS = (".fp16.", ".non_ema.", ".ema.")
TIMEOUT_S = 30.0


class NotEnoughDisk(BadInput):
    """The download would not fit on the disk holding the cache."""


class CorruptDownload(HearthError):
    """A fetched file does not match the hub's checksum; the bad copy is deleted."""


class DownloadCancelled(Exception):  # noqa: N818 - a control-flow signal, as JobCancelled
    """The user cancelled; what was fetched stays in ``*.incomplete`` to resume from."""


@dataclass(frozen=True, slots=True)
class RemoteFile:
    """One file of a hub repo at a commit, as the hub describes it."""

    name: str
    size: int
    sha256: str = ""
    """The LFS object's sha256 (large files); "" for a file kept in git itself."""
    blob_id: str = ""
    """The git blob hash (sha1 of ``blob <size>\\0`` + content)."""

    @property
    def etag(self) -> str:
        """The hub's ETag for it, which is also its blob's name in the cache."""
        return self.sha256 or self.blob_id


@dataclass(frozen=True, slots=True)
class DownloadPlan:
    """What one download fetches, and where it goes."""

    repo_id: str
    revision: str
    commit: str
    files: tuple[RemoteFile, ...]
    skipped: tuple[tuple[str, str], ...]
    """(file name, why it is left out)."""
    cache_dir: Path

    @property
    def repo_dir(self) -> Path:
        return self.cache_dir / f"models--{self.repo_id.replace('/', '--')}"

    @property
    def snapshot(self) -> Path:
        return self.repo_dir / "snapshots" / self.commit

    @property
    def total_bytes(self) -> int:
        return sum(file.size for file in self.files)

    def blob(self, file: RemoteFile) -> Path:
        return self.repo_dir / "blobs" / file.etag

    def partial(self, file: RemoteFile) -> Path:
        return self.repo_dir / "blobs" / f"{file.etag}.incomplete"

    def have_bytes(self, file: RemoteFile) -> int:
        """Bytes of ``file`` already on disk (a finished blob, or a partial one to resume)."""
        if self.blob(file).is_file():
            return file.size
        try:
            return min(self.partial(file).stat().st_size, file.size)
        except OSError:
            return 0

    def missing_bytes(self) -> int:
        return sum(file.size - self.have_bytes(file) for file in self.files)


@dataclass
class DownloadProgress:
    """Where a download is: bytes of every file, done so far (resumed bytes count as done)."""

    done: int
    total: int
    file: str = ""
    stage: str = "downloading"
    """``downloading``, ``verifying`` or ``linking``."""
    fetched: int = 0
    """Bytes fetched over the network by this run."""

    @property
    def percent(self) -> int:
        return 100 if not self.total else min(100, self.done * 100 // self.total)


ProgressCallback = Callable[[DownloadProgress], None]


@dataclass
class Cancel:
    """Set from any thread (a Cancel button, a signal handler); checked between chunks, and it
    closes the connection being read, so a download stuck on a silent server stops at once."""

    event: threading.Event = field(default_factory=threading.Event)
    response: Any = None

    def set(self) -> None:
        self.event.set()
        response = self.response
        if response is None:
            return
        # Closing a socket does not wake a read blocked on it in another thread; shutting it down does.
        with contextlib.suppress(Exception):  # whatever state the stream is in
            stream = response.extensions.get("network_stream")
            connection = stream.get_extra_info("socket") if stream is not None else None
            if connection is not None:
                connection.shutdown(socket.SHUT_RDWR)

    @property
    def requested(self) -> bool:
        return self.event.is_set()


# --------------------------------------------------------------------------- planning


def plan_download(
    repo_id: str, *, revision: str = "main", include: str = "", cache_dir: Path | None = None
) -> DownloadPlan:
    """Ask the hub what ``repo_id`` holds and pick the files worth fetching."""
    repo_id = checked_repo_id(repo_id)
    info = hub_call(lambda api: api.model_info(repo_id, revision=revision, files_metadata=True), repo_id)
    files = [
        RemoteFile(
            name=s.rfilename,
            size=int(s.lfs.size if s.lfs else s.size or 0),
            sha256=s.lfs.sha256 if s.lfs else "",
            blob_id=s.blob_id or "",
        )
        for s in info.siblings or ()
    ]
    chosen, skipped = choose_files(files, include)
    if not chosen:
        why = f" matching {include!r}" if include else ""
        raise BadInput(f"{repo_id} has no model files{why} to download", field="hub_id")
    for file in chosen:
        if not file.etag:
            raise CorruptDownload(f"the hub gave no checksum for {repo_id}/{file.name}; not downloading it")
    return DownloadPlan(
        repo_id=repo_id,
        revision=revision,
        commit=info.sha,
        files=tuple(chosen),
        skipped=tuple(skipped),
        cache_dir=Path(cache_dir) if cache_dir else hf_cache_dir(),
    )


def choose_files(
    files: list[RemoteFile], include: str = ""
) -> tuple[list[RemoteFile], list[tuple[str, str]]]:
    """The files a model needs, safetensors before pickles; (chosen, [(skipped, why)])."""
    names = {file.name for file in files}
    skipped: list[tuple[str, str]] = []
    chosen = []
    pipeline_parts = _pipeline_parts(files)
    for file in files:
        why = _why_skip(file.name, names, pipeline_parts, include)
        if why:
            skipped.append((file.name, why))
        else:
            chosen.append(file)
    ggufs = [file.name for file in chosen if file.name.lower().endswith(".gguf")]
    if len(ggufs) > 1:
        listed = ", ".join(sorted(ggufs)[:8]) + (" …" if len(ggufs) > 8 else "")
        raise BadInput(
            f"this repo holds {len(ggufs)} GGUF files, each a whole model: pick one with --include "
            f"(one of {listed})",
            field="include",
        )
    return chosen, skipped


def _why_skip(name: str, names: set[str], pipeline_parts: set[str] | None, include: str) -> str:
    path = PurePosixPath(name)
    lower = name.lower()
    if include and not fnmatch.fnmatch(name, include) and path.suffix.lower() in (*WEIGHT_SUFFIXES, ".gguf"):
        return f"not matching --include {include}"
    if any(fnmatch.fnmatch(path.name.lower(), pattern) for pattern in OTHER_FRAMEWORKS):
        return "another framework's weights"
    if pipeline_parts is not None and len(path.parts) > 1 and path.parts[0] not in pipeline_parts:
        return "not a part the pipeline's model_index.json names"
    if pipeline_parts is not None and len(path.parts) == 1 and path.suffix.lower() in WEIGHT_SUFFIXES:
        return "a single-file checkpoint beside the pipeline's parts"
    if path.suffix.lower() in PICKLE_SUFFIXES and _has_safetensors_beside(path, names):
        return "pickle weights; the safetensors beside them are downloaded instead"
    for variant in VARIANTS:
        if variant in lower and lower.replace(variant, ".") in {n.lower() for n in names}:
            return f"a {variant.strip('.')} copy of weights downloaded in full precision"
    return ""


def _pipeline_parts(files: list[RemoteFile]) -> set[str] | None:
    """A diffusers pipeline repo's parts: its sub-folders holding a config (``unet/config.json``,
    ``scheduler/scheduler_config.json``, a tokenizer's files); None when it is no pipeline."""
    if not any(file.name == "model_index.json" for file in files):
        return None
    return {
        PurePosixPath(file.name).parts[0]
        for file in files
        if file.name.count("/") == 1 and file.name.endswith((".json", ".txt", ".model"))
    }


def _has_safetensors_beside(path: PurePosixPath, names: set[str]) -> bool:
    folder = str(path.parent) if str(path.parent) != "." else ""
    prefix = f"{folder}/" if folder else ""
    return any(
        n.startswith(prefix) and "/" not in n[len(prefix) :] and n.endswith(".safetensors") for n in names
    )


# --------------------------------------------------------------------------- fetching


def check_disk(plan: DownloadPlan) -> None:
    """Refuse before the first byte when the rest of the download would not fit."""
    need = plan.missing_bytes()
    where = _existing_parent(plan.cache_dir)
    free = shutil.disk_usage(where).free
    if need + DISK_MARGIN_BYTES > free:
        from workers.arbiter.units import format_bytes

        raise NotEnoughDisk(
            f"not enough disk space for {plan.repo_id}: it needs {format_bytes(need)} more, "
            f"{format_bytes(free)} is free at {where}",
            field="hub_id",
        )


def download(
    plan: DownloadPlan, *, progress: ProgressCallback | None = None, cancel: Cancel | None = None
) -> Path:
    """Fetch every file of ``plan`` (resuming partial ones), verify each, then write the
    snapshot's links and ref; returns the snapshot folder."""
    cancel = cancel or Cancel()
    state = DownloadProgress(done=sum(plan.have_bytes(f) for f in plan.files), total=plan.total_bytes)
    report = progress or (lambda _state: None)
    report(state)
    for file in plan.files:
        if cancel.requested:
            raise DownloadCancelled()
        if not plan.blob(file).is_file():
            state.file = file.name
            _fetch(plan, file, state, report, cancel)
    state.stage, state.file = "linking", ""
    report(state)
    _link_snapshot(plan)
    return plan.snapshot


def _fetch(plan: DownloadPlan, file: RemoteFile, state: DownloadProgress, report, cancel: Cancel) -> None:
    partial = plan.partial(file)
    partial.parent.mkdir(parents=True, exist_ok=True)
    have = plan.have_bytes(file)
    if have < file.size:
        url = _file_url(plan, file)
        state.stage = "downloading"
        _stream(url, partial, have, file, state, report, cancel)
    state.stage = "verifying"
    report(state)
    _verify(plan, file, partial)
    os.chmod(partial, 0o644)
    os.replace(partial, plan.blob(file))


def _file_url(plan: DownloadPlan, file: RemoteFile) -> str:
    """Where the bytes are: the ``/resolve/`` address after the hub's redirects (a CDN)."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    url = hf_hub_url(plan.repo_id, file.name, revision=plan.commit, endpoint=endpoint())
    metadata = hub_call(lambda _api: get_hf_file_metadata(url, endpoint=endpoint()), plan.repo_id)
    return metadata.location or url


def _stream(url, partial: Path, have: int, file: RemoteFile, state, report, cancel: Cancel) -> None:
    """Append the rest of ``file`` to ``partial``; a connection cut mid-file resumes from what
    is on disk (an HTTP ``Range``), as a restart would."""
    for attempt in range(RESUMES + 1):
        before = have
        try:
            have = hub_call(
                lambda _api, start=have: _append(url, partial, start, state, report, cancel), file.name
            )
            return
        except (HubUnreachable, RuntimeError):  # RuntimeError: the stream was closed under the read
            if cancel.requested:  # a cancel while the connection hung: it ends cancelled
                raise DownloadCancelled() from None
            have = partial.stat().st_size if partial.exists() else 0
            if attempt == RESUMES or have == before:  # nothing came through: the hub is gone
                raise


def _append(url, partial: Path, have: int, state, report, cancel: Cancel) -> int:
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    headers = build_hf_headers()
    headers["Accept-Encoding"] = "identity"  # the bytes as stored: sizes and Range offsets match
    if have:
        headers["Range"] = f"bytes={have}-"
    with get_session().stream(
        "GET", url, headers=headers, timeout=TIMEOUT_S, follow_redirects=True
    ) as response:
        cancel.response = response
        if cancel.requested:
            raise DownloadCancelled()
        hf_raise_for_status(response)
        if have and response.status_code != 206:  # the server ignored Range: start over
            state.done -= have
            have = 0
        with open(partial, "ab" if have else "wb") as out:
            for chunk in response.iter_bytes(CHUNK_BYTES):
                if cancel.requested:
                    raise DownloadCancelled()
                out.write(chunk)
                have += len(chunk)
                state.done += len(chunk)
                state.fetched += len(chunk)
                report(state)
    return have


def _verify(plan: DownloadPlan, file: RemoteFile, partial: Path) -> None:
    size = partial.stat().st_size
    digest = _sha256(partial) if file.sha256 else _git_blob_hash(partial, size)
    expected = file.sha256 or file.blob_id
    if size != file.size or digest != expected:
        partial.unlink(missing_ok=True)  # a resumed copy built on bad bytes must not be resumed again
        kind = "sha256" if file.sha256 else "git hash"
        raise CorruptDownload(
            f"{plan.repo_id}/{file.name} does not match the hub's {kind} ({size} bytes, {digest[:12]}… "
            f"instead of {file.size} bytes, {expected[:12]}…): refused and deleted; download it again"
        )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def _git_blob_hash(path: Path, size: int) -> str:
    digest = hashlib.sha1(f"blob {size}\0".encode())  # noqa: S324 - git's own object name, not security
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def _link_snapshot(plan: DownloadPlan) -> None:
    """The cache's layout: ``snapshots/<commit>/<file>`` links to ``blobs/<etag>``, ``refs/<revision>``
    names the commit (as huggingface_hub writes them, so its own readers find the model)."""
    for file in plan.files:
        link = plan.snapshot / file.name
        link.parent.mkdir(parents=True, exist_ok=True)
        target = os.path.relpath(plan.blob(file), link.parent)
        if link.is_symlink() and os.readlink(link) == target:
            continue
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target)
    if plan.revision != plan.commit:
        from workers.atomic import write_text

        ref = plan.repo_dir / "refs" / plan.revision
        ref.parent.mkdir(parents=True, exist_ok=True)
        write_text(ref, plan.commit)


def download_model(
    registry,
    repo_id: str,
    *,
    include: str = "",
    revision: str = "main",
    progress: ProgressCallback | None = None,
    cancel: Cancel | None = None,
) -> list:
    """Plan, check the disk, fetch, verify and link ``repo_id``: the registry's new rows."""
    with hub_session():
        plan = plan_download(repo_id, revision=revision, include=include)
        check_disk(plan)
        download(plan, progress=progress, cancel=cancel)
    return register_download(registry, plan)


def register_download(registry, plan: DownloadPlan) -> list:
    """Link the downloaded snapshot (a model folder, else each model file in it) as Hearth's own
    download; a snapshot Hearth cannot tell the kind of is left in the cache, unregistered."""
    from models.identify import identify
    from models.identity import FoundKind
    from models.registry import DOWNLOADED
    from models.scan import MODEL_SUFFIXES, Candidate, is_model_folder

    snapshot = plan.snapshot
    if is_model_folder(snapshot):
        candidates = [Candidate(snapshot, DOWNLOADED, plan.repo_id, hub_id=plan.repo_id)]
    else:
        candidates = [
            Candidate(snapshot / f.name, DOWNLOADED, f"{plan.repo_id}/{f.name}", hub_id=plan.repo_id)
            for f in plan.files
            if PurePosixPath(f.name).suffix.lower() in MODEL_SUFFIXES
        ]
    found = [(c, identify(c.path, c.name)) for c in candidates]
    usable = [(c, identity) for c, identity in found if identity.kind is not FoundKind.unknown]
    if not usable:
        reasons = "; ".join(identity.reason for _c, identity in found) or "no model file in it"
        raise BadInput(
            f"{plan.repo_id} was downloaded to {snapshot} but is not a model Hearth can use: {reasons}",
            field="hub_id",
        )
    return [registry.link(c, identity) for c, identity in usable]


def _existing_parent(path: Path) -> Path:
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path
