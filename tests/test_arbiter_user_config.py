"""arbiter.json: the person's choice of memory kept free, read safely and noticed once per change."""

from __future__ import annotations

import pytest

from workers.arbiter.units import GiB
from workers.arbiter.user_config import ArbiterUserConfig, ConfigError, ConfigWatcher, load, save


def test_no_file_means_the_default_and_a_saved_choice_reads_back(tmp_path):
    path = tmp_path / "arbiter.json"
    assert load(path) == ArbiterUserConfig(headroom=None)
    save(ArbiterUserConfig(headroom=3 * GiB), path)
    assert load(path).headroom == 3 * GiB
    assert not [p for p in tmp_path.iterdir() if p.name != "arbiter.json"], "written atomically"


@pytest.mark.parametrize(
    "text,words",
    [
        ("{not json", "cannot be read"),
        ('{"headroom_bytes": -1}', "must be a whole number of bytes"),
        ('{"headroom_bytes": "2GiB"}', "must be a whole number of bytes"),
        ('{"headroom_bytes": true}', "must be a whole number of bytes"),
        ("[1, 2]", "must be a whole number of bytes"),
    ],
)
def test_a_bad_file_is_refused_with_the_reason(tmp_path, text, words):
    path = tmp_path / "arbiter.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=words):
        load(path)


def test_the_watcher_reports_each_change_once_and_ignores_a_broken_file(tmp_path, caplog):
    path = tmp_path / "arbiter.json"
    watcher = ConfigWatcher(path)
    assert watcher.changed() == ArbiterUserConfig(), "first look: no file, the defaults"
    assert watcher.changed() is None
    save(ArbiterUserConfig(headroom=GiB), path)
    assert watcher.changed() == ArbiterUserConfig(headroom=GiB)
    assert watcher.changed() is None
    path.write_text("{broken")
    assert watcher.changed() is None and "keeping the current settings" in caplog.text
