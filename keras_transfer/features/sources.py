"""Data sources for extraction: arrays, image folders and streams, each with
a fingerprint that changes whenever the data does."""

import hashlib
import itertools
import os
import pathlib
import warnings

import keras
import numpy as np

from keras_transfer.images.decoding import decoder
from keras_transfer.images.folder import scan
from keras_transfer.images.stream import ImageStream
from keras_transfer.utils import guards
from keras_transfer.utils.labels import check_labels

__all__ = ["DataSource", "RowDigest"]


class RowDigest:
    """SHA-256 of images and labels row by row: the same rows give the same
    digest however they are batched."""

    def __init__(self):
        self.images, self.labels, self.layout = hashlib.sha256(), hashlib.sha256(), None

    def update(self, images, labels):
        images = np.ascontiguousarray(images)
        self.images.update(memoryview(images).cast("B"))
        if labels is not None:
            self.labels.update(np.ascontiguousarray(labels, dtype="int64").tobytes())
        self.layout = (str(images.dtype), tuple(images.shape[1:]), labels is None)

    def hexdigest(self):
        text = f"{self.images.hexdigest()}|{self.labels.hexdigest()}|{self.layout}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]


class DataSource:
    """Turns any supported `data` into batches of `(images, labels or None)`.

    A stream (tf.data, PyDataset, generator) is read once, through one
    iterator: `verify_prefix` reads the rows a store already holds and
    checks them, and `batches` goes on from there.
    """

    def __init__(self, data, batch_size, image_shape, steps=None):
        self.data, self.batch_size, self.image_shape = data, batch_size, tuple(image_shape)
        self.steps = steps
        self.class_names = None
        self.labels = None
        self.paths = None
        self.skipped = []
        self._iterator, self._pending = None, None
        if isinstance(data, (str, os.PathLike)):
            self._from_directory(pathlib.Path(data))
        elif isinstance(data, np.ndarray):
            self.images = data
        elif isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], np.ndarray):
            self.images, self.labels = data[0], check_labels(data[1], argument="data")
            if len(self.labels) != len(self.images):
                raise ValueError(
                    f"`data` labels do not match the images. Received: "
                    f"{len(self.images)} images and {len(self.labels)} labels"
                )
        elif isinstance(data, (list, tuple)):
            raise ValueError(
                "`data` must be an array of images, a tuple (images, labels) of arrays, a "
                "directory, a tf.data.Dataset, a PyDataset or a generator. Received: a "
                f"{type(data).__name__} of {len(data)} items"
            )
        else:
            self.images = None  # a stream: tf.data, PyDataset or generator
            if steps is None:
                guards.check_finite_length(data, "data", "steps=N, the batches to read")
        if self.images is not None:
            self._check_shape(self.images.shape[1:])
            guards.check_finite_values(self.images, "data", "pixels")
            if len(self.images) == 0:
                raise ValueError("`data` is empty. Received: an array with 0 images")

    @property
    def is_stream(self):
        return self.images is None and self.paths is None

    def _check_shape(self, shape):
        if (
            len(shape) != 3
            or shape[-1] not in (1, 3)
            or (self.image_shape[:2] != (None, None) and tuple(shape[:2]) != self.image_shape[:2])
        ):
            raise ValueError(
                f"Images must have shape {self.image_shape} (height, width, 1 or 3 "
                f"channels). Received: images of shape {tuple(shape)}"
            )

    def _from_directory(self, root):
        self.class_names, self.paths, labels = scan(root, argument="data")
        self.root, self.path_labels, self.images = root, np.array(labels), None

    def fingerprint(self, hash_data=True):
        """What the store's key records of the data. Arrays: every row and
        label; a directory: the class names and each file's path relative to
        the root, size, modification time and inode (so files moved between
        folders, which keep their inode, change it); a stream: nothing up front, its
        rows are hashed shard by shard as they are read (`verify_prefix`).
        `hash_data=False` (no store to protect) records the kind and count
        only: hashing a large array costs more than a GPU's extraction."""
        if not hash_data:
            return {"kind": self._kind(), "count": self.size(), "sha256": None}
        digest = hashlib.sha256()
        if self.paths is not None:
            digest.update(repr(self.class_names).encode())
            for path, label in zip(self.paths, self.path_labels):
                stat = path.stat()
                relative = path.relative_to(self.root).as_posix()
                # The inode tells apart files that a rename moved (it keeps
                # it) from equal-size files of the same mtime: swapped class
                # folders give another key. A copy gets a new one.
                digest.update(
                    f"{relative}|{label}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ino}\n".encode()
                )
            return {
                "kind": "directory",
                "count": len(self.paths),
                "sha256": digest.hexdigest()[:16],
                # Its pixels: another decoder (or version) gives others.
                "decoding": decoder(),
            }
        if self.images is not None:
            rows = RowDigest()
            rows.update(self.images, self.labels)
            return {"kind": "array", "count": len(self.images), "sha256": rows.hexdigest()}
        return {"kind": "stream", "count": None, "sha256": None}

    def _kind(self):
        if self.paths is not None:
            return "directory"
        return "array" if self.images is not None else "stream"

    def size(self):
        """Rows in the data, or `None` for a stream."""
        if self.paths is not None:
            return len(self.paths)
        return None if self.images is None else len(self.images)

    def most_rows(self):
        """At most this many rows come: `size()`, or the files of a
        `ktr.ImageStream` (a file that fails to decode gives none)."""
        if self.size() is None and isinstance(self.data, ImageStream) and self.steps is None:
            return len(self.data.rows)
        return self.size()

    def verify_prefix(self, shards, whole=False):
        """Reads a stream's first rows, shard by shard, and compares each with
        the `data_sha256` a store recorded. Returns the rows that matched in
        full shards and `None`, or those rows and the first range that
        differs. `whole`: the stream must also end where the shards do."""
        position = 0
        for shard in shards:
            digest, need = RowDigest(), shard["rows"]
            while need:
                images, labels = self._take(need)
                if images is None:
                    return position, (position, position + shard["rows"])
                digest.update(images, labels)
                need -= len(images)
            if digest.hexdigest() != shard.get("data_sha256"):
                return position, (position, position + shard["rows"])
            position += shard["rows"]
        if whole and self._take(1)[0] is not None:
            return position, (position, None)
        return position, None

    def _take(self, count):
        """Up to `count` rows of the stream, or `(None, None)` at its end."""
        if self._pending is None:
            self._pending = next(self._stream(), None)
            if self._pending is None:
                return None, None
        images, labels = self._pending
        rest = (images[count:], None if labels is None else labels[count:])
        self._pending = rest if len(rest[0]) else None
        return images[:count], None if labels is None else labels[:count]

    def batches(self, start=0, stop=None):
        """Yields `(images, labels)` for rows `start` to `stop`; a stream goes
        on from where `verify_prefix` stopped."""
        if self.paths is not None:
            yield from self._directory_batches(start, stop)
        elif self.images is not None:
            stop = len(self.images) if stop is None else stop
            for i in range(start, stop, self.batch_size):
                j = min(i + self.batch_size, stop)
                yield self.images[i:j], None if self.labels is None else self.labels[i:j]
        else:
            if self._pending is not None:
                pending, self._pending = self._pending, None
                yield pending
            yield from self._stream()

    def _directory_batches(self, start, stop):
        # ImageStream's threads decode batches ahead while the model runs.
        # Pixels stay uint8: a quarter of float32's bytes reach the device,
        # and the model casts them there.
        rows = (self.paths[start:stop], self.path_labels[start:stop])
        if not len(rows[0]):
            return
        stream = ImageStream(rows, self.image_shape[:2], self.batch_size, cache=None)
        with warnings.catch_warnings():  # extract_features sums them up
            warnings.simplefilter("ignore", UserWarning)
            for images, labels, _ in stream.iter_batches():
                yield images, labels
        self.skipped += stream.skipped

    def _stream(self):
        """The stream's batches, checked, from one iterator shared by all reads."""
        if self._iterator is None:
            data = self.data
            if hasattr(data, "as_numpy_iterator"):
                self._iterator = data.as_numpy_iterator()
            elif isinstance(data, keras.utils.PyDataset):
                count = data.num_batches if self.steps is None else self.steps
                # Its own order; ktr.ImageStream decodes batches ahead.
                self._iterator = itertools.islice(iter(data), count)
            else:
                self._iterator = iter(data)
            if self.steps is not None:
                self._iterator = itertools.islice(self._iterator, self.steps)
        for batch in self._iterator:
            images, labels = batch if isinstance(batch, tuple) else (batch, None)
            images = np.asarray(images)
            self._check_shape(images.shape[1:])
            guards.check_finite_values(images, "data", "pixels")
            labels = None if labels is None else check_labels(labels, argument="data")
            if labels is not None and len(labels) != len(images):
                raise ValueError(
                    f"A batch's labels do not match its images. Received: "
                    f"{len(images)} images and {len(labels)} labels"
                )
            yield images, labels
