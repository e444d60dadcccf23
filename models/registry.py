"""The model registry: every model Hearth knows of on this machine, linked where it lies.

A SQLite file in the data folder (``models.db``). A row points at a file or folder the user
already has (or an Ollama name); nothing is ever copied, and removing a row never touches the
user's files. A row is written in one statement after its model was identified, so a file that
cannot be read leaves no half-registered row. A model whose file disappears stays listed,
marked missing, until it comes back or is removed. The built-in catalog models are listed
beside the registered ones (``builtin_models``) and are not stored.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from models.catalog import CATALOG, CatalogEntry
from models.fit import catalog_tiers
from models.identify import identify
from models.identity import FoundKind, ModelIdentity
from models.scan import Candidate
from workers.errors import BadInput, MissingModel
from workers.migrations import migrate
from workers.paths import data_dir

MISSING = "missing"
BUILTIN = "built-in"
DOWNLOADED = "downloaded"
"""The source of a model Hearth downloaded into the hub cache: deleting it frees its disk."""


def _create_models(db: sqlite3.Connection) -> None:
    db.execute(
        "CREATE TABLE IF NOT EXISTS models ("
        " id TEXT PRIMARY KEY, location TEXT NOT NULL UNIQUE, path TEXT NOT NULL, name TEXT NOT NULL,"
        " source TEXT NOT NULL, hub_id TEXT NOT NULL DEFAULT '', kind TEXT NOT NULL,"
        " family TEXT NOT NULL, identity TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,"
        " problem TEXT NOT NULL DEFAULT '', added REAL NOT NULL, checked REAL NOT NULL)"
    )
    db.execute("CREATE INDEX IF NOT EXISTS models_kind ON models(kind)")


MIGRATIONS = (_create_models,)
"""Oldest first; never edit one that shipped, append a new one (the schema version is their count)."""


@dataclass(frozen=True, slots=True)
class RegisteredModel:
    """A model in the registry (or a built-in one), as the pickers and ``hearth models`` show it."""

    id: str
    name: str
    location: str
    """The file or folder, or ``ollama:<name>:<tag>``; a built-in model's catalog id."""
    path: str
    """What a loader opens (an Ollama model's GGUF blob); "" for a built-in model."""
    source: str
    hub_id: str
    identity: ModelIdentity
    problem: str = ""
    """"" when fine, ``missing`` when its file is gone, else why it can no longer be read."""

    @property
    def missing(self) -> bool:
        return self.problem == MISSING

    @property
    def downloaded(self) -> bool:
        return self.source == DOWNLOADED

    @property
    def spec(self) -> str:
        """What a job's model field takes: a catalog id, a hub id (read from the cache), or the path."""
        if self.source == BUILTIN:
            return self.id
        return self.hub_id if self.hub_id and Path(self.path).is_dir() else self.path

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "location": self.location,
            "path": self.path,
            "source": self.source,
            "hub_id": self.hub_id,
            "spec": self.spec,
            "problem": self.problem,
            **{key: value for key, value in self.identity.to_json().items() if key != "path"},
        }


class ModelRegistry:
    """Thread-safe; every write is one committed statement."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else data_dir() / "models.db"
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            str(self.path), check_same_thread=False, isolation_level=None, timeout=30.0
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self.schema_version = migrate(self._db, MIGRATIONS, f"model registry {self.path}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> ModelRegistry:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ writing

    def add(self, path: Path) -> RegisteredModel:
        """Identify ``path`` and link it in place; ``BadInput`` naming why when it is not a model."""
        path = Path(path).expanduser()
        if not path.exists():
            raise BadInput(f"{path}: no such file or folder", field="path")
        candidate = Candidate(Path(os.path.abspath(path)), "added", path.name)
        identity = identify(candidate.path, candidate.name)
        return self.link(candidate, identity)

    def link(self, candidate: Candidate, identity: ModelIdentity) -> RegisteredModel:
        """Register (or refresh) an identified model where it lies. A file nothing could be told
        about is refused: the registry holds models, not every file that looked like one."""
        if identity.kind is FoundKind.unknown:
            raise BadInput(f"{candidate.path} is not a model Hearth can use: {identity.reason}", field="path")
        try:
            size, mtime_ns = _fingerprint(candidate.path)
        except OSError as exc:  # gone since it was identified
            raise BadInput(f"{candidate.path}: {exc.strerror or exc}", field="path") from None
        now = time.time()
        model_id = make_id(candidate.name, candidate.location)
        with self._lock:
            self._db.execute(
                "INSERT INTO models(id, location, path, name, source, hub_id, kind, family, identity, size,"
                " mtime_ns, problem, added, checked) VALUES (?,?,?,?,?,?,?,?,?,?,?,'',?,?)"
                " ON CONFLICT(location) DO UPDATE SET path=excluded.path, name=excluded.name,"
                " source=CASE models.source WHEN 'downloaded' THEN models.source ELSE excluded.source END,"
                " hub_id=excluded.hub_id, kind=excluded.kind,"
                " family=excluded.family, identity=excluded.identity, size=excluded.size,"
                " mtime_ns=excluded.mtime_ns, problem='', checked=excluded.checked",
                (
                    model_id,
                    candidate.location,
                    str(candidate.path),
                    candidate.name,
                    candidate.source,
                    candidate.hub_id,
                    identity.kind.value,
                    identity.family,
                    json.dumps(identity.to_json()),
                    size,
                    mtime_ns,
                    now,
                    now,
                ),
            )
        return self._require(candidate.location)

    def remove(self, key: str) -> RegisteredModel:
        """Unlink a model: its row goes, its files stay where they are."""
        model = self._known(key)
        with self._lock:
            self._db.execute("DELETE FROM models WHERE id = ?", (model.id,))
        return model

    def _known(self, key: str) -> RegisteredModel:
        model = self.get(key)
        if model is None:
            if any(entry.id == key for entry in CATALOG):
                raise BadInput(f"{key} is built into Hearth and cannot be removed", field="id")
            raise MissingModel(f"no model {key!r} in the registry (`hearth models list` shows the ids)")
        return model

    def delete_files(self, key: str) -> tuple[list[RegisteredModel], int]:
        """Delete a model Hearth downloaded: its snapshot and the blobs nothing else in the hub
        cache uses go, and so does every row pointing into that snapshot; returns those rows and
        the bytes freed. A model Hearth only linked is refused: its files are the user's."""
        from models.hub_cache import cached_revision, delete_revision

        model = self._known(key)
        if not model.downloaded:
            raise BadInput(
                f"{model.id} was linked, not downloaded by Hearth: its files are yours, so it is only unlinked",
                field="id",
            )
        revision = cached_revision(Path(model.path))
        gone = [m for m in self.models(check=False) if revision and _inside(m.path, revision.snapshot)]
        freed = delete_revision(revision) if revision is not None else 0
        for row in gone or [model]:
            with self._lock:
                self._db.execute("DELETE FROM models WHERE id = ?", (row.id,))
        return gone or [model], freed

    def freed_by_delete(self, model: RegisteredModel) -> int:
        """What ``delete_files`` would free (the confirmation names it); 0 for a linked model."""
        from models.hub_cache import cached_revision

        if not model.downloaded:
            return 0
        revision = cached_revision(Path(model.path))
        return revision.freed_bytes if revision is not None else 0

    def rescan(self) -> list[RegisteredModel]:
        """Check every registered model against its file: gone is marked missing, changed is
        identified again (unreadable now is marked so, the row kept), back is unmarked."""
        for model in self.models(check=False):
            self._recheck(model)
        return self.models(check=False)

    def _recheck(self, model: RegisteredModel) -> None:
        if not os.path.exists(model.path):
            self._set_problem(model.id, MISSING)
            return
        stored = self._db_fingerprint(model.id)
        if stored == _fingerprint(Path(model.path)) and not model.problem:
            return
        candidate = Candidate(Path(model.path), model.source, model.name, model.location, model.hub_id)
        try:
            self.link(candidate, identify(candidate.path, candidate.name))
        except (BadInput, MissingModel) as exc:
            self._set_problem(model.id, f"unreadable: {exc}")

    def _set_problem(self, model_id: str, problem: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE models SET problem = ?, checked = ? WHERE id = ?", (problem, time.time(), model_id)
            )

    # ------------------------------------------------------------------ reading

    def models(self, kind: FoundKind | None = None, *, check: bool = True) -> list[RegisteredModel]:
        """Registered models, by name; ``check``: mark those whose file is gone (or back) first."""
        where, args = ("WHERE kind = ?", (kind.value,)) if kind else ("", ())
        rows = self._select(f"{where} ORDER BY name COLLATE NOCASE, id", args)
        if not check:
            return rows
        checked = []
        for model in rows:
            gone = not os.path.exists(model.path)
            if gone != model.missing:
                problem = MISSING if gone else ""
                self._set_problem(model.id, problem)
                model = replace(model, problem=problem)
            checked.append(model)
        return checked

    def get(self, key: str) -> RegisteredModel | None:
        """A model by its id, its location, or the path it was found at."""
        absolute = os.path.abspath(os.path.expanduser(key)) if key else key
        rows = self._select(
            "WHERE id = ? OR location = ? OR location = ? OR path = ?", (key, key, absolute, absolute)
        )
        return rows[0] if rows else None

    def _require(self, location: str) -> RegisteredModel:
        rows = self._select("WHERE location = ?", (location,))
        return rows[0]

    def _db_fingerprint(self, model_id: str) -> tuple[int, int]:
        with self._lock:
            row = self._db.execute("SELECT size, mtime_ns FROM models WHERE id = ?", (model_id,)).fetchone()
        return (row[0], row[1]) if row else (-1, -1)

    def _select(self, where: str, args: tuple) -> list[RegisteredModel]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT id, name, location, path, source, hub_id, identity, problem FROM models {where}",
                args,
            ).fetchall()
        return [_row(row) for row in rows]


def _row(row: tuple) -> RegisteredModel:
    model_id, name, location, path, source, hub_id, identity, problem = row
    return RegisteredModel(
        id=model_id,
        name=name,
        location=location,
        path=path,
        source=source,
        hub_id=hub_id,
        identity=ModelIdentity.from_json(json.loads(identity)),
        problem=problem,
    )


def _inside(path: str, folder: Path) -> bool:
    return os.path.abspath(path) == str(folder) or os.path.abspath(path).startswith(f"{folder}{os.sep}")


def _fingerprint(path: Path) -> tuple[int, int]:
    """Size and modification time: a file replaced or rewritten is identified again."""
    info = os.stat(path)
    return info.st_size, info.st_mtime_ns


def make_id(name: str, location: str) -> str:
    """A short id a person can type: the name's slug and six hex digits of where it lies."""
    stem = name.rsplit("/", 1)[-1]
    for suffix in (".safetensors", ".gguf", ".sft"):
        stem = stem.removesuffix(suffix)
    slug = re.sub(r"[^a-z0-9.]+", "-", stem.lower()).strip("-.")[:40] or "model"
    return f"{slug}-{hashlib.sha1(location.encode()).hexdigest()[:6]}"


def builtin_models() -> list[RegisteredModel]:
    """The catalog's models (the embedded chat model, the demos), with the catalog's own estimates."""
    return [_builtin(entry) for entry in CATALOG]


def _builtin(entry: CatalogEntry) -> RegisteredModel:
    identity = ModelIdentity(
        path="",
        format=BUILTIN,
        kind=FoundKind(entry.kind.value),
        family=entry.family,
        parameters=0,
        dtype="",
        file_bytes=0,
        tiers=catalog_tiers(entry.memory_bytes),
    )
    return RegisteredModel(
        id=entry.id,
        name=entry.title,
        location=entry.id,
        path="",
        source=BUILTIN,
        hub_id="",
        identity=identity,
    )
