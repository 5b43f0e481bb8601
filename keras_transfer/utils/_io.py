"""Atomic writes, checksums, and replacing only what the library wrote.

Every file the library writes goes to a temporary name and is renamed into
place, so an interruption never leaves half a file. A directory is
replaced by renaming the old one aside, renaming the new one in, and only
then deleting the old one. Nothing is replaced unless a caller-supplied
test says the library wrote it.
"""

import hashlib
import os
import pathlib
import shutil
import tempfile
import uuid

__all__ = ["atomic_write", "is_inside", "replace_dir", "sha256_file", "staging_dir"]


def atomic_write(path, write):
    """Writes through `write(handle)` to a temporary file, then renames it."""
    path = pathlib.Path(os.fspath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def staging_dir(target):
    """A new hidden directory beside `target`, on the same file system."""
    target = pathlib.Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    return pathlib.Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.partial-"))


def replace_dir(stage, target):
    """Moves the finished `stage` to `target`. An existing `target` (which
    the caller has checked is the library's own) is renamed aside first and
    deleted only once the new one is in place."""
    stage, target = pathlib.Path(stage), pathlib.Path(target)
    if not target.exists():
        os.replace(stage, target)
        return
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    os.replace(target, old)
    try:
        os.replace(stage, target)
    except BaseException:
        os.replace(old, target)  # put the user's previous version back
        raise
    if old.is_symlink():
        old.unlink()  # a link: only the link was moved aside
    else:
        shutil.rmtree(old, ignore_errors=True)


def is_inside(path, other):
    """Whether `path` is `other` or lies inside it (both resolved)."""
    path, other = pathlib.Path(path).resolve(), pathlib.Path(other).resolve()
    return path == other or other in path.parents
