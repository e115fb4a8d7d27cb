"""common/io.py: the one atomic file writer."""

import os
import stat

import numpy as np
import pytest

from minigpt4.common.io import atomic_write


def test_writes_text_bytes_and_streamed_content(tmp_path):
    assert atomic_write(tmp_path / "a" / "b.txt", "héllo\n") == tmp_path / "a" / "b.txt"
    assert (tmp_path / "a" / "b.txt").read_bytes() == "héllo\n".encode("utf-8")
    atomic_write(tmp_path / "c.bin", b"\x00\x01\x02")
    assert (tmp_path / "c.bin").read_bytes() == b"\x00\x01\x02"
    atomic_write(tmp_path / "d.npy", lambda handle: np.save(handle, np.arange(5)))
    np.testing.assert_array_equal(np.load(tmp_path / "d.npy"), np.arange(5))
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b.txt", "c.bin", "d.npy"]


def test_a_failing_writer_keeps_the_old_file_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "report.json"
    atomic_write(target, "old")

    def half_then_crash(handle):
        handle.write(b"new but unfinish")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="killed mid-write"):
        atomic_write(target, half_then_crash)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_new_file_gets_umask_permissions_not_temp_file_ones(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "x.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "x.txt").stat().st_mode) == 0o644
