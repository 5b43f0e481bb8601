"""The feature store's format: one place that writes and reads it.

A store is a directory: `manifest.json` plus one `.npy` file per feature
set and shard, and one for the labels; or, for a small store, one `.npz`
(the method's format). The manifest records the store's key (a
fingerprint of the backbone's architecture and weights, the preprocessing,
the layers and pooling, the input size and the data), a SHA-256 per file,
and whether the store is complete. Every file is written to a temporary
name and renamed. Nothing in a directory is deleted unless a manifest
written here lists it.
"""

import json
import pathlib
import zipfile

import keras
import numpy as np

from keras_transfer.layers import FeatureFusion
from keras_transfer.utils._io import atomic_write, is_inside, sha256_file

__all__ = [
    "FORMAT",
    "KEY_FIELDS",
    "MANIFEST",
    "SHARD_SIZE",
    "StoreWriter",
    "check_key",
    "fuse",
    "is_store",
    "load_arrays",
    "part_dirs",
    "part_name",
    "read_manifest",
    "read_npz",
    "verify",
    "write_manifest",
    "write_npz",
]

FORMAT = 1
SHARD_SIZE = 2048
MANIFEST = "manifest.json"
KEY_FIELDS = ("models", "layers", "pooling", "fusion", "dtype", "data", "policy")


class StoreWriter:
    """Writes shards and the manifest of one store directory.

    A directory that is not empty and has no manifest is refused: it is not
    a store, and its files are not ours to delete or mix with. One writer at
    a time: it holds an exclusive lock on the store's `.lock` file (POSIX)
    until `close()`, and a second writer is refused at once. Use it as a
    context manager.
    """

    def __init__(self, path, key, overwrite):
        self.path = path = pathlib.Path(path)
        try:
            path.mkdir(parents=True, exist_ok=True)
            probe = path / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as error:
            raise PermissionError(
                f"The cache directory is not writable. Received: cache={str(path)!r} "
                f"({error.strerror})"
            ) from error
        self._lock = _lock(path)
        try:
            self._open(key, overwrite)
        except BaseException:
            self.close()
            raise

    def _open(self, key, overwrite):
        path = self.path
        manifest = read_manifest(path)
        if manifest is None:
            foreign = sorted(p.name for p in path.iterdir() if not p.name.startswith("."))
            if foreign:
                raise FileExistsError(
                    f"`cache` directory {str(path)!r} is not a feature store (no "
                    f"{MANIFEST}) and is not empty: {foreign[:5]}. Nothing in it was "
                    "touched; pass an empty or new directory. Received: "
                    f"cache={str(path)!r}"
                )
        elif manifest["key"].get("id") != key.get("id") or (
            overwrite and key.get("data", {}).get("kind") == "stream"
        ):
            check_key(manifest.get("key", {}), key, path, overwrite)
            for entry in _entries(manifest):  # only the files this store wrote
                (path / _relative(path, entry["file"])).unlink(missing_ok=True)
            manifest = None
        else:
            verify(path, manifest)
        if manifest is None:
            manifest = {"format": FORMAT, "key": key, "complete": False, "rows": 0, "shards": []}
        self.manifest = manifest

    def close(self):
        """Releases the store's lock."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    @property
    def rows(self):
        return self.manifest["rows"]

    @property
    def complete(self):
        return self.manifest["complete"]

    def write_shard(self, features, labels, data_sha256=None):
        index = len(self.manifest["shards"])
        files = {}
        arrays = dict(features)
        if labels is not None:
            arrays["__labels__"] = labels
        for number, (name, array) in enumerate(arrays.items()):
            filename = f"shard_{index:05d}_{number}.npy"
            atomic_write(self.path / filename, lambda h, a=array: np.save(h, a))
            files[name] = {
                "file": filename,
                "sha256": sha256_file(self.path / filename),
                "shape": list(array.shape),
            }
        rows = len(next(iter(features.values())))
        shard = {"rows": rows, "files": files}
        if data_sha256 is not None:
            shard["data_sha256"] = data_sha256  # a stream's rows, checked on reuse
        self.manifest["shards"].append(shard)
        self.manifest["rows"] += rows
        self._save()

    def finish(self, class_names):
        self.manifest["complete"] = True
        self.manifest["class_names"] = class_names
        self._save()

    def _save(self):
        write_manifest(self.path, self.manifest)


def _lock(path):
    """An open `.lock` file in `path` holding an exclusive lock, or a
    `BlockingIOError` when another writer holds it. `None` where the system
    has no `fcntl` (Windows): no lock there."""
    try:
        import fcntl
    except ImportError:
        return None
    handle = open(path / ".lock", "a")  # held until close()
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise BlockingIOError(
            f"The feature store at {str(path)!r} is being written by another process (or "
            "another extract_features call): wait for it to finish, then run again to "
            f"reuse its features, or pass another cache path. Received: cache={str(path)!r}"
        ) from None
    return handle


def write_manifest(path, manifest):
    text = json.dumps(manifest, indent=1, default=str).encode()
    atomic_write(pathlib.Path(path) / MANIFEST, lambda h: h.write(text))


def read_manifest(path):
    """The manifest of a store directory, `None` if it has none; a damaged
    one is a `ValueError` that names the file."""
    file = pathlib.Path(path) / MANIFEST
    if not file.is_file():
        return None
    try:
        manifest = json.loads(file.read_text())
        if not isinstance(manifest, dict) or not isinstance(manifest.get("key"), dict):
            raise ValueError("no key")
        for field in ("rows", "complete"):
            manifest[field]  # noqa: B018 (a KeyError is the fault)
        for entry in _entries(manifest):
            entry["file"], entry["sha256"]  # noqa: B018
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as error:
        raise ValueError(
            f"The feature store's manifest {str(file)!r} is damaged or truncated "
            f"({type(error).__name__}: {error}). Delete the store to extract again."
        ) from error
    return manifest


def _entries(manifest):
    return [entry for shard in manifest.get("shards", []) for entry in shard["files"].values()]


def _relative(path, file):
    """A manifest's file name, refused if it reaches outside the store."""
    name = pathlib.PurePosixPath(str(file))
    if name.is_absolute() or ".." in name.parts or "\\" in str(file) or not name.parts:
        raise ValueError(
            f"The feature store's manifest in {str(path)!r} names a file outside the "
            f"store; refused. Received: file={str(file)!r}"
        )
    return pathlib.Path(*name.parts)


def _stored_file(path, file):
    """A manifest's file to read, refused if it is a link that resolves
    outside the store."""
    found = path / _relative(path, file)
    if not is_inside(found, path):
        raise ValueError(
            f"The feature store at {str(path)!r} holds {str(file)!r}, a link to "
            f"{str(found.resolve())!r} outside the store: refused, it is not a file the "
            f"store wrote. Delete the store to extract again. Received: file={str(file)!r}"
        )
    return found


def check_key(found, expected, path, overwrite):
    if not found or found.get("id") == expected.get("id") or overwrite:
        return
    differs = [k for k in KEY_FIELDS if found.get(k) != expected.get(k)]
    raise ValueError(
        f"The feature store at {str(path)!r} was made with different settings "
        f"(they differ in: {', '.join(differs)}); it may come from another backbone "
        "or data. Pass overwrite=True to replace it, or another cache path."
    )


def verify(path, manifest):
    for shard in manifest["shards"]:
        for name, entry in shard["files"].items():
            file = _stored_file(path, entry["file"])
            if not file.is_file() or sha256_file(file) != entry["sha256"]:
                raise ValueError(
                    f"Corrupt feature store at {str(path)!r}: shard file "
                    f"{entry['file']!r} ({name}) is missing or fails its checksum. "
                    "Delete the store, or pass overwrite=True, to extract again."
                )


def load_arrays(path, manifest, mmap=True):
    """`(features, labels)` of a store directory, checked against the manifest."""
    path = pathlib.Path(path)
    verify(path, manifest)
    sets, labels = {}, []
    for shard in manifest["shards"]:
        for name, entry in shard["files"].items():
            array = np.load(_stored_file(path, entry["file"]), mmap_mode="r" if mmap else None)
            (labels if name == "__labels__" else sets.setdefault(name, [])).append(array)
    if len(manifest["shards"]) == 1 and mmap:
        features = {name: parts[0] for name, parts in sets.items()}
    else:
        features = {name: np.concatenate(parts) for name, parts in sets.items()}
    label_array = (labels[0] if len(labels) == 1 else np.concatenate(labels)) if labels else None
    if len(sets) > 1 and "fused" not in features and manifest["key"].get("fusion"):
        features["fused"] = fuse(features, manifest["key"]["fusion"])
    return features, label_array


def fuse(features, fusion):
    arrays = [a for name, a in features.items() if name != "fused"]
    return np.asarray(keras.ops.convert_to_numpy(FeatureFusion(fusion)(arrays)))


def write_npz(path, features, labels, class_names, manifest):
    arrays = {f"features/{name}": array for name, array in features.items()}
    if labels is not None:
        arrays["labels"] = labels
    manifest = dict(manifest, class_names=class_names)
    arrays["manifest"] = np.array(json.dumps(manifest, default=str))
    atomic_write(path, lambda handle: np.savez(handle, **arrays))


def read_npz(path):
    """`(features, labels, class_names, manifest)` of a store `.npz`."""
    try:
        with np.load(path) as data:
            manifest = json.loads(str(data["manifest"]))
            features = {
                k.split("/", 1)[1]: data[k] for k in data.files if k.startswith("features/")
            }
            labels = data["labels"] if "labels" in data.files else None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, TypeError) as error:
        raise ValueError(
            f"{str(path)!r} is not a feature store .npz ({type(error).__name__}: "
            f"{error or 'empty file'})."
        ) from error
    return features, labels, manifest.get("class_names"), manifest


def is_store(path):
    """Whether `path` is a store this library wrote (so it may be replaced)."""
    path = pathlib.Path(path)
    if path.is_dir():
        visible = (p for p in path.iterdir() if not p.name.startswith("."))
        return (path / MANIFEST).is_file() or not any(visible)
    try:
        read_npz(path)
    except ValueError:
        return False
    return True


def part_name(index, count):
    return f"part-{index:05d}-of-{count:05d}"


def part_dirs(root):
    """{part directory name: path} of the parts in a store directory."""
    root = pathlib.Path(root)
    if not root.is_dir():
        return {}
    return {p.name: p for p in sorted(root.glob("part-*-of-*")) if p.is_dir()}
