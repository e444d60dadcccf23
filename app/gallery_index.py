"""The gallery's index: every output in Hearth's folders, newest first, with what made it.

No Qt here: the Gallery tab runs ``scan`` on a background thread and shows the batches it yields,
so a folder of thousands of files never blocks the window. Each entry's kind, prompt and model
come from ``workers.generation_info`` (the sidecar or the file's own tags); a file whose
parameters cannot be read is still listed, with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from workers.errors import BadInput
from workers.generation_info import SUFFIXES, GenerationInfo, read_info, sidecar_of

BATCH = 100
"""Entries handed to the window at a time while a scan runs."""
KINDS = ("image", "video", "music")
"""What the kind filter offers; brush renders and exports count as images."""


@dataclass(frozen=True)
class GalleryEntry:
    """One output file, as listed."""

    path: Path
    mtime: float
    size: int
    kind: str
    """"image", "video" or "music"."""
    prompt: str = ""
    model: str = ""
    info: GenerationInfo | None = None
    problem: str = ""
    """Why the parameters could not be read ("" when they were)."""
    search_text: str = field(default="", repr=False)

    @property
    def key(self) -> str:
        return str(self.path)


def folders() -> list[Path]:
    """Where Hearth writes outputs: the outputs folder and the brush editor's renders."""
    from workers.paths import data_dir, outputs_dir

    return [outputs_dir(), data_dir() / "brush-renders"]


def list_files(roots: list[Path]) -> list[tuple[Path, float, int]]:
    """(path, mtime, size) of every output file under ``roots`` (not recursive), newest first.

    Missing folders are empty; temp files of writes in progress (dot files) and sidecars are not
    outputs."""
    found: list[tuple[Path, float, int]] = []
    for root in roots:
        try:
            with os.scandir(root) as entries:
                for entry in entries:
                    if entry.name.startswith(".") or not entry.name.lower().endswith(SUFFIXES):
                        continue
                    try:
                        if not entry.is_file():
                            continue
                        stat = entry.stat()
                    except OSError:
                        continue  # vanished or unreadable meanwhile
                    found.append((Path(entry.path), stat.st_mtime, stat.st_size))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
    found.sort(key=lambda item: item[1], reverse=True)
    return found


def entry_for(path: Path, mtime: float, size: int) -> GalleryEntry:
    """The listing of one file; its parameters when they can be read, the reason when not."""
    try:
        info = read_info(path)
    except BadInput as exc:
        return GalleryEntry(path=path, mtime=mtime, size=size, kind=kind_of(path), problem=str(exc))
    except (OSError, MemoryError, RuntimeError) as exc:  # the file went away, a decoder failed
        return GalleryEntry(path=path, mtime=mtime, size=size, kind=kind_of(path), problem=str(exc))
    kind = "image" if info.kind == "brush" else info.kind
    return GalleryEntry(
        path=path,
        mtime=mtime,
        size=size,
        kind=kind,
        prompt=info.prompt,
        model=info.model,
        info=info,
        search_text=f"{info.prompt}\n{info.params.get('negative_prompt', '')}\n{path.name}".lower(),
    )


def kind_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".wav", ".flac", ".ogg", ".mp3"):
        return "music"
    if suffix in (".mp4", ".gif"):
        return "video"
    return "image"


def scan(roots: list[Path], stop=lambda: False, batch: int = BATCH) -> Iterator[list[GalleryEntry]]:
    """Batches of entries, newest first; ``stop()`` returning True ends the scan early."""
    pending: list[GalleryEntry] = []
    for path, mtime, size in list_files(roots):
        if stop():
            return
        pending.append(entry_for(path, mtime, size))
        if len(pending) >= batch:
            yield pending
            pending = []
    if pending:
        yield pending


def matches(entry: GalleryEntry, text: str = "", kind: str = "", model: str = "") -> bool:
    """The search box (words of the prompt or the file name, in any order), the kind and model filters."""
    if kind and entry.kind != kind:
        return False
    if model and entry.model != model:
        return False
    haystack = entry.search_text or entry.path.name.lower()
    return all(word in haystack for word in text.lower().split())


def delete_output(path: Path) -> list[Path]:
    """Remove an output and its sidecar; returns what was removed. ``BadInput`` if it cannot be."""
    removed = []
    for target in (path, sidecar_of(path)):
        try:
            target.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise BadInput(f"{target.name} could not be deleted ({exc.strerror})") from None
        removed.append(target)
    return removed
