"""Atomic writes: all or nothing, and the same permissions as a plain open()."""

from __future__ import annotations

import os

import pytest

from emogrid.atomic import atomic_path, write_json


def test_failed_write_leaves_old_file_and_no_temp(tmp_path):
    target = tmp_path / "metrics.json"
    write_json(target, {"ok": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == '{\n  "ok": 1\n}\n'
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_permissions_follow_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {})
        (tmp_path / "b.json").write_text("{}")
    finally:
        os.umask(old)
    mode = lambda p: (tmp_path / p).stat().st_mode & 0o777  # noqa: E731
    assert mode("a.json") == mode("b.json") == 0o644
