"""`Features`: extracted features with their labels, saved and loaded."""

import dataclasses
import pathlib
import shutil

import numpy as np

from keras_transfer.features import shards, store
from keras_transfer.utils import _io

__all__ = ["Features"]


@dataclasses.dataclass
class Features:
    """Extracted features with their labels, class names and manifest.

    Attributes:
        features: dict of feature-set name -> array `(N, width)`; the name is
            `"features"` for one set, the layer name for several layers, and
            the backbone's label (plus `"fused"`) for several backbones.
        labels: integer labels `(N,)`, or `None`.
        class_names: list of class names, or `None`.
        manifest: the store's manifest (key, shards, checksums).
    """

    features: dict
    labels: np.ndarray | None = None
    class_names: list | None = None
    manifest: dict = dataclasses.field(default_factory=dict)

    @property
    def x(self):
        """The fused set if present, else the only (or first) set."""
        if "fused" in self.features:
            return self.features["fused"]
        return next(iter(self.features.values()))

    def __len__(self):
        return len(self.x)

    def save(self, path):
        """Saves to one `.npz` file or a store directory, replacing what is
        there only if it is a store (or empty), and atomically: a reader
        sees the old store or the new one, never a mix or a doubled one."""
        path = pathlib.Path(path)
        if path.exists() and not store.is_store(path):
            raise FileExistsError(
                f"{str(path)!r} exists and is not a feature store: not replaced. "
                f"Received: path={str(path)!r}"
            )
        manifest = {
            "format": store.FORMAT,
            "key": self.manifest.get("key", {}),
            "complete": True,
            "rows": len(self),
        }
        if path.suffix == ".npz":
            store.write_npz(path, self.features, self.labels, self.class_names, manifest)
            return path
        stage = _io.staging_dir(path)
        try:
            with store.StoreWriter(stage, manifest["key"], overwrite=True) as writer:
                features = {k: np.asarray(v) for k, v in self.features.items()}
                labels = None if self.labels is None else np.asarray(self.labels)
                writer.write_shard(features, labels)
                writer.finish(self.class_names)
            _io.replace_dir(stage, path)
        finally:
            if stage.exists():
                shutil.rmtree(stage)
        return path

    @classmethod
    def load(cls, path, mmap=True):
        """Loads a store written by `extract_features(cache=...)` or `.save()`.

        Checks every file against the manifest's checksum and refuses an
        incomplete store.
        """
        path = pathlib.Path(path)
        if path.suffix == ".npz":
            if not path.is_file():
                raise FileNotFoundError(
                    f"No feature store at {str(path)!r}. Received: path={str(path)!r}"
                )
            features, labels, class_names, manifest = store.read_npz(path)
            return cls(features, labels, class_names, manifest)
        manifest = store.read_manifest(path)
        if manifest is None and store.part_dirs(path):
            manifest = shards.merge_parts(path)  # parts not merged yet: join them here
        if manifest is None:
            raise FileNotFoundError(
                f"No feature store at {str(path)!r} (no manifest.json). Received: "
                f"path={str(path)!r}"
            )
        if not manifest.get("complete"):
            raise ValueError(
                f"The feature store at {str(path)!r} is incomplete ({manifest['rows']} "
                "rows written): an extraction was interrupted. Run extract_features "
                "with the same arguments to resume it."
            )
        return cls.from_store(path, manifest, mmap=mmap)

    @classmethod
    def from_store(cls, path, manifest, mmap=True):
        features, labels = store.load_arrays(path, manifest, mmap=mmap)
        return cls(features, labels, manifest.get("class_names"), manifest)

    @classmethod
    def merge(cls, path):
        """Joins the parts of a sharded extraction into one store.

        Checks that every part is present and complete, that all have the
        same key (backbone, weights, layers, data), and that their row
        ranges cover the data with no gap or overlap; raises a `ValueError`
        that lists every fault. Then writes the store's `manifest.json`,
        whose shards are the parts' files (nothing is copied), and loads it.

        Example:

        >>> import tempfile
        >>> net = keras_transfer.transfer("mobilenet", None, weights=None,
        ...                               input_shape=(32, 32, 3))
        >>> images, store = np.zeros((6, 32, 32, 3), "uint8"), tempfile.mkdtemp()
        >>> for index in range(2):  # on N machines: one index each
        ...     part = keras_transfer.extract_features(
        ...         net, images, cache=store, shard=(index, 2), progress=False)
        >>> len(part), len(keras_transfer.Features.merge(store))
        (3, 6)

        Args:
            path: the store directory the parts were written in.
        """
        path = pathlib.Path(path)
        manifest = shards.merge_parts(path)
        store.write_manifest(path, manifest)
        return cls.from_store(path, manifest)
