"""Atomic writes and directory replacement: nothing half-written, nothing
left behind."""

import hashlib

import pytest

from keras_transfer.utils import _io
from tests.conftest import runs_once_in

pytestmark = runs_once_in("jax")  # file work, the same under every backend


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path):
    path = tmp_path / "sub" / "file.bin"
    _io.atomic_write(path, lambda handle: handle.write(b"first"))
    assert path.read_bytes() == b"first"

    def fails(handle):
        handle.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        _io.atomic_write(path, fails)
    assert path.read_bytes() == b"first"
    assert [p.name for p in path.parent.iterdir()] == ["file.bin"]  # no temporary left
    assert _io.sha256_file(path) == hashlib.sha256(b"first").hexdigest()


def test_replace_dir_swaps_in_the_stage_and_removes_the_old_one(tmp_path):
    target = tmp_path / "run"
    for content in ("one", "two"):
        stage = _io.staging_dir(target)
        assert stage.parent == tmp_path and stage.name.startswith(".run.partial-")
        (stage / "file.txt").write_text(content)
        _io.replace_dir(stage, target)
        assert (target / "file.txt").read_text() == content
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    assert _io.is_inside(target / "file.txt", target) and not _io.is_inside(tmp_path, target)
