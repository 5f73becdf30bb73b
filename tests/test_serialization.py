"""atomic_write: all or nothing, and files readable like any other."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from attnlab.serialization import atomic_write


def test_atomic_write_uses_the_umask_mode(tmp_path):
    path = atomic_write(tmp_path / "a.json", lambda t: Path(t).write_text("{}"))
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
    assert path.read_text() == "{}"


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = atomic_write(tmp_path / "b.txt", lambda t: Path(t).write_text("old"))

    def broken(tmp):
        Path(tmp).write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, broken)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["b.txt"]
