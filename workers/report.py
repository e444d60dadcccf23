"""'Report a problem': one zip with the logs, versions and machine facts, written atomically.

Prompts, chats and images are left out unless the user ticks the box that includes the job
history (which holds prompts)."""

from __future__ import annotations

import importlib.metadata
import json
import platform
import shutil
import sqlite3
import time
import zipfile
from pathlib import Path

from workers.atomic import atomic_path
from workers.paths import data_dir, database_path, log_dir

PACKAGES = (
    "hearth",
    "torch",
    "diffusers",
    "transformers",
    "accelerate",
    "bitsandbytes",
    "PySide6-Essentials",
    "soundfile",
    "numpy",
    "huggingface_hub",
)


def versions() -> dict[str, str]:
    found = {"python": platform.python_version(), "platform": platform.platform()}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def machine_facts() -> dict[str, object]:
    import psutil

    facts: dict[str, object] = {"cpus": psutil.cpu_count(), "memory_bytes": psutil.virtual_memory().total}
    nvidia_smi = shutil.which("nvidia-smi")
    facts["nvidia_smi"] = bool(nvidia_smi)
    return facts


def write_report(target: Path | None = None, include_history: bool = False) -> Path:
    """Collect logs, versions and machine facts into a zip; returns its path."""
    target = target or data_dir() / f"hearth-report-{time.strftime('%Y%m%d-%H%M%S')}.zip"
    with atomic_path(target) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("versions.json", json.dumps(versions(), indent=2))
        archive.writestr("machine.json", json.dumps(machine_facts(), indent=2))
        for log in sorted(log_dir().glob("*.log*")):
            archive.write(log, f"logs/{log.name}")
        if include_history and database_path().exists():
            archive.writestr("jobs.json", json.dumps(_job_history(), indent=2))
    return target


def _job_history() -> list[dict]:
    with sqlite3.connect(database_path()) as db:
        rows = db.execute(
            "SELECT job_id, kind, state, request, error_kind, error_message FROM jobs "
            "ORDER BY created DESC LIMIT 200"
        ).fetchall()
    keys = ("job_id", "kind", "state", "request", "error_kind", "error_message")
    return [dict(zip(keys, row, strict=True)) for row in rows]
