"""The window's settings: typed data with a description per field, stored as versioned JSON.

``settings.json`` lives in ``workers.paths.config_dir()`` and is written atomically. A file that
cannot be read is set aside (renamed ``settings.json.corrupt``) and the defaults are used, so a
broken file never stops the app from starting and is never silently overwritten.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from app.api.serve import DEFAULT_HOST, DEFAULT_PORT
from workers.atomic import write_text
from workers.paths import config_dir
from workers.protocol import ImageRequest
from workers.schema import default_of

log = logging.getLogger(__name__)

SETTINGS_VERSION = 1
FILE_NAME = "settings.json"


def _setting(default, description: str):
    return field(default=default, metadata={"description": description})


def _setting_factory(factory, description: str):
    return field(default_factory=factory, metadata={"description": description})


def _image(name: str):
    """The Image tab starts from the job schema's defaults; settings keep the user's last values."""
    return default_of(ImageRequest, name)


@dataclass(kw_only=True)
class Settings:
    """Everything the window remembers between runs."""

    image_model: str = _setting(
        _image("model"), "Model of the Image tab: catalog id, hub id, folder or file."
    )
    image_width: int = _setting(_image("width"), "Image width in pixels (a multiple of 8).")
    image_height: int = _setting(_image("height"), "Image height in pixels (a multiple of 8).")
    image_steps: int = _setting(_image("steps"), "Denoising steps for a new image.")
    image_guidance: float = _setting(
        _image("guidance"), "Classifier-free guidance (CFG) scale for a new image."
    )
    forms: dict = _setting_factory(
        dict,
        "Last values of each tab's form (chat, video, music, brushes), by tab and field name; "
        "limits and defaults come from the job schema, so only the values are kept here.",
    )
    memory_refresh_s: float = _setting(1.0, "Seconds between two readings of the VRAM arbiter's ledger.")
    window_geometry: str = _setting("", "Window position and size (Qt saveGeometry, base64).")
    window_state: str = _setting("", "Dock layout (Qt saveState, base64).")
    demo_notice_dismissed: bool = _setting(False, "The demo-models notice was closed by the user.")
    welcome_shown: bool = _setting(
        False, "The first-run welcome (machine, models, how to add one) was shown."
    )
    api_enabled: bool = _setting(
        False, "Serve the local OpenAI-compatible API while the window is open (Settings → Local API)."
    )
    api_host: str = _setting(
        DEFAULT_HOST, "Address the local API listens on; anything but loopback reaches the network."
    )
    api_port: int = _setting(DEFAULT_PORT, "TCP port of the local API.")
    api_yield_to_window: bool = _setting(
        False, "API jobs run in the background class, so the window's own work goes first."
    )
    cluster_address: str = _setting(
        "",
        "Ray cluster (HOST:PORT) the window's workers run on from the next start; empty: this machine "
        "only (Settings → Cluster…, needs the cluster extra).",
    )


def describe() -> dict[str, str]:
    """Field name -> what it means, for a settings dialog or ``--help``-like listings."""
    return {f.name: f.metadata["description"] for f in fields(Settings)}


def settings_path() -> Path:
    return config_dir() / FILE_NAME


def load_settings(path: Path | None = None) -> Settings:
    """The saved settings, or the defaults when there are none or they cannot be read."""
    path = Path(path) if path else settings_path()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Settings()
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return _set_aside(path, f"cannot be read ({exc})")
    if not isinstance(raw, dict) or not isinstance(raw.get("version"), int):
        return _set_aside(path, "is not a Hearth settings file")
    return _from_dict(_migrate(raw))


def save_settings(settings: Settings, path: Path | None = None) -> None:
    path = Path(path) if path else settings_path()
    data = {"version": SETTINGS_VERSION, **asdict(settings)}
    write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def _set_aside(path: Path, why: str) -> Settings:
    backup = path.with_name(path.name + ".corrupt")
    try:
        os.replace(path, backup)
        where = f"; it was moved to {backup}"
    except OSError:
        where = ""
    log.warning("settings file %s %s: using the default settings%s", path, why, where)
    return Settings()


def _migrate(raw: dict) -> dict:
    """Bring an older file up to ``SETTINGS_VERSION`` (one step per version as the format changes)."""
    version = raw["version"]
    if version > SETTINGS_VERSION:
        log.warning(
            "settings file is from a newer Hearth (version %d); reading the fields this one knows", version
        )
    return raw


def _from_dict(raw: dict) -> Settings:
    """Known fields of the right type are kept; anything else falls back to its default."""
    defaults = Settings()
    values = {}
    for f in fields(Settings):
        if f.name not in raw:
            continue
        value, default = raw[f.name], getattr(defaults, f.name)
        if _same_type(value, default):
            values[f.name] = float(value) if isinstance(default, float) else value
        else:
            log.warning("setting %s has the wrong type (%r); using the default %r", f.name, value, default)
    return Settings(**values)


def _same_type(value, default) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))
