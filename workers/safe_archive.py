"""Reading a zip someone else may have made (a ``.hearth`` project from the internet) without
trusting anything it says about itself.

Checked before a byte is inflated: every entry's name (relative, no ``..``, no backslash, no
duplicate, no symlink, encryption or exotic compression) and the sizes the archive declares,
against a cap per entry, a cap for the whole archive and a compression ratio. The declared sizes
are the author's word, so the same caps are checked again on the bytes really produced while
inflating, a chunk at a time (``zipfile`` stops an entry at its declared size and fails its CRC
if the data says otherwise, but nothing here relies on that alone).
"""

from __future__ import annotations

import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from workers.errors import BadInput

CHUNK_BYTES = 1 << 20
ALLOWED_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)


@dataclass(frozen=True)
class ArchiveLimits:
    """How much an archive may hold; sized by the caller for what its format legitimately needs."""

    max_total_bytes: int
    """Uncompressed bytes of all entries together."""
    max_entries: int
    max_ratio: float = 100.0
    """Uncompressed / compressed size of one entry; zip bombs reach 1000 and more."""
    ratio_free_bytes: int = 1 << 20
    """Entries smaller than this are never refused for their ratio (a blank mask compresses well)."""


@dataclass
class ArchiveReader:
    """Entries of one open archive, read under one shared byte budget."""

    archive: zipfile.ZipFile
    limits: ArchiveLimits
    entries: dict[str, zipfile.ZipInfo] = field(default_factory=dict)
    read_bytes: int = 0

    @classmethod
    def open(cls, archive: zipfile.ZipFile, limits: ArchiveLimits) -> ArchiveReader:
        reader = cls(archive, limits)
        infos = archive.infolist()
        if len(infos) > limits.max_entries:
            raise BadInput(f"too many entries ({len(infos)}; at most {limits.max_entries})")
        for info in infos:
            _check_entry(info)
            if info.filename in reader.entries:
                raise BadInput(f"entry {info.filename!r} appears twice")
            reader.entries[info.filename] = info
        declared = sum(info.file_size for info in infos)
        if declared > limits.max_total_bytes:
            raise BadInput(
                f"its entries claim {declared} bytes, more than the {limits.max_total_bytes} allowed"
            )
        return reader

    def names(self) -> set[str]:
        return set(self.entries)

    def read(self, name: str, max_bytes: int) -> bytes:
        """The entry's bytes, inflated a chunk at a time and refused the moment a limit is passed."""
        info = self.entries.get(name)
        if info is None:
            raise BadInput(f"{name} is missing")
        self._check_size(info, info.file_size, max_bytes, "claims to inflate to")
        chunks, size = [], 0
        with self.archive.open(info) as stream:
            while chunk := stream.read(CHUNK_BYTES):
                size += len(chunk)
                self._check_size(info, size, max_bytes, "inflates to")
                chunks.append(chunk)
        self.read_bytes += size
        return b"".join(chunks)

    def _check_size(self, info: zipfile.ZipInfo, size: int, max_bytes: int, verb: str) -> None:
        limits, name = self.limits, info.filename
        if size > max_bytes:
            raise BadInput(f"{name} {verb} more than the {max_bytes} bytes allowed")
        if self.read_bytes + size > limits.max_total_bytes:
            raise BadInput(f"{name} {verb} more than the {limits.max_total_bytes} bytes allowed in all")
        if size > limits.ratio_free_bytes and size > limits.max_ratio * max(info.compress_size, 1):
            raise BadInput(
                f"{name} {verb} {size} bytes from {info.compress_size} compressed, more than "
                f"{limits.max_ratio:g} times as much (a zip bomb?)"
            )


def _check_entry(info: zipfile.ZipInfo) -> None:
    name = info.filename
    path = PurePosixPath(name)
    if not name or name.startswith("/") or "\\" in name or "\x00" in name or ":" in path.parts[0]:
        raise BadInput(f"entry {name!r} has an absolute or foreign path")
    if ".." in path.parts or "." in name.split("/"):
        raise BadInput(f"entry {name!r} points outside the archive ('..')")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise BadInput(f"entry {name!r} is a symbolic link")
    if info.is_dir():
        raise BadInput(f"entry {name!r} is a folder")
    if info.flag_bits & 0x1:
        raise BadInput(f"entry {name!r} is encrypted")
    if info.compress_type not in ALLOWED_METHODS:
        raise BadInput(f"entry {name!r} uses an unsupported compression method ({info.compress_type})")
