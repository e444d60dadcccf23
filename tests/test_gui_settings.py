"""Settings survive a restart, and a damaged settings file never stops the app from starting."""

from __future__ import annotations

import json
import logging

from app.settings import SETTINGS_VERSION, Settings, describe, load_settings, save_settings, settings_path


def test_settings_round_trip_under_the_config_dir(hearth_dirs):
    settings = Settings(
        image_model="my-org/sd-model", image_width=512, image_steps=30, demo_notice_dismissed=True
    )
    save_settings(settings)
    path = settings_path()
    assert path.parent == hearth_dirs / "config"
    assert json.loads(path.read_text())["version"] == SETTINGS_VERSION
    assert load_settings() == settings


def test_missing_file_gives_defaults():
    assert load_settings() == Settings()


def test_corrupt_file_falls_back_to_defaults_with_a_warning_and_is_kept_aside(caplog):
    path = settings_path()
    path.write_text("{ this is not json")
    with caplog.at_level(logging.WARNING, logger="app.settings"):
        settings = load_settings()
    assert settings == Settings()
    assert "using the default settings" in caplog.text
    assert path.with_name("settings.json.corrupt").read_text() == "{ this is not json"
    save_settings(settings)
    assert load_settings() == Settings()


def test_a_field_of_the_wrong_type_falls_back_alone(caplog):
    settings_path().write_text(
        json.dumps({"version": SETTINGS_VERSION, "image_width": "wide", "image_steps": 12})
    )
    with caplog.at_level(logging.WARNING, logger="app.settings"):
        settings = load_settings()
    assert settings.image_width == Settings().image_width and settings.image_steps == 12
    assert "image_width" in caplog.text


def test_every_setting_has_a_description():
    descriptions = describe()
    assert set(descriptions) == set(Settings.__dataclass_fields__)
    assert all(text.strip() for text in descriptions.values())
