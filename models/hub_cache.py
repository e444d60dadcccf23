"""Deleting what Hearth downloaded into the hub cache: a snapshot and the blobs only it uses,
through huggingface_hub's own cache manager (``scan_cache_dir().delete_revisions``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class CachedRevision:
    """A downloaded snapshot in the hub cache and what deleting it frees."""

    repo_id: str
    commit: str
    snapshot: Path
    freed_bytes: int


def cached_revision(path: Path) -> CachedRevision | None:
    """The hub-cache snapshot ``path`` (a snapshot folder or a file in one) belongs to."""
    path = Path(path)
    for parent in [path, *path.parents]:
        if parent.parent.name == "snapshots" and parent.parent.parent.name.startswith("models--"):
            strategy = _delete_strategy(parent)
            if strategy is None:
                return None
            repo_id = parent.parent.parent.name.removeprefix("models--").replace("--", "/")
            return CachedRevision(repo_id, parent.name, parent, strategy.expected_freed_size)
    return None


def delete_revision(revision: CachedRevision) -> int:
    """Delete a downloaded snapshot and the blobs no other snapshot uses; the bytes freed."""
    strategy = _delete_strategy(revision.snapshot)
    if strategy is None:
        return 0
    strategy.execute()
    return strategy.expected_freed_size


def _delete_strategy(snapshot: Path):
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    cache_dir = snapshot.parent.parent.parent
    try:
        info = scan_cache_dir(cache_dir)
    except (CacheNotFound, OSError, ValueError):
        return None
    known = {rev.commit_hash for repo in info.repos for rev in repo.revisions}
    if snapshot.name not in known:
        return None
    return info.delete_revisions(snapshot.name)
