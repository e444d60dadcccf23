"""'Report a problem' collects logs and versions, and leaves prompts out unless asked."""

from __future__ import annotations

import logging
import zipfile

import pytest

from workers.jobstore import JobStore
from workers.logs import setup_logging
from workers.paths import database_path
from workers.protocol import ImageRequest, Priority
from workers.report import write_report


@pytest.fixture
def gui_log():
    setup_logging("gui")
    yield
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "hearth", False)]:
        root.removeHandler(handler)
        handler.close()


def test_report_has_logs_and_versions_but_no_prompts_by_default(tmp_path, gui_log):
    logging.getLogger("hearth.test").error("something broke in job abc123")
    store = JobStore(database_path())
    store.add("abc123", ImageRequest(prompt="my secret prompt"), Priority.single_shot)
    store.close()

    plain = write_report(tmp_path / "plain.zip")
    with zipfile.ZipFile(plain) as archive:
        names = archive.namelist()
        assert "versions.json" in names and "logs/gui.log" in names
        assert "something broke in job abc123" in archive.read("logs/gui.log").decode()
        assert not any(b"my secret prompt" in archive.read(name) for name in names)

    full = write_report(tmp_path / "full.zip", include_history=True)
    with zipfile.ZipFile(full) as archive:
        assert b"my secret prompt" in archive.read("jobs.json")
