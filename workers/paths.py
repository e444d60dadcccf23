"""Where Hearth keeps its files. Tests redirect everything with HEARTH_* environment variables."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "hearth"


def _dir(env: str, default) -> Path:
    """``default`` may be a callable so platformdirs is only asked when no override is set."""
    override = os.environ.get(env)
    path = Path(override or (default() if callable(default) else default))
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir() -> Path:
    return _dir("HEARTH_DATA_DIR", lambda: platformdirs.user_data_dir(APP))


def config_dir() -> Path:
    return _dir("HEARTH_CONFIG_DIR", lambda: platformdirs.user_config_dir(APP))


def runtime_dir() -> Path:
    """Per-user, private: holds the arbiter's socket and lock."""
    path = _dir("HEARTH_RUNTIME_DIR", lambda: platformdirs.user_runtime_dir(APP))
    os.chmod(path, 0o700)
    return path


def log_dir() -> Path:
    return _dir("HEARTH_LOG_DIR", lambda: platformdirs.user_log_dir(APP))


def outputs_dir() -> Path:
    return _dir("HEARTH_OUTPUTS_DIR", lambda: str(data_dir() / "outputs"))


def projects_dir() -> Path:
    """Where brush sessions save their ``.hearth`` projects unless the user picks a file."""
    return _dir("HEARTH_PROJECTS_DIR", lambda: str(data_dir() / "projects"))


def models_dir() -> Path:
    """Where demo models are saved on first run and converted models are cached."""
    return _dir("HEARTH_MODELS_DIR", lambda: str(data_dir() / "models"))


def database_path() -> Path:
    return data_dir() / "hearth.db"
