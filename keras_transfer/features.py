"""Feature extraction in batches, to memory or to an on-disk feature store.

A store is a directory: `manifest.json` plus one `.npy` file per feature set
and shard, and one for the labels; or, for a small store, one `.npz` (the
method's format). The manifest records the store's key (a fingerprint of
the backbone's architecture and weights, the preprocessing, the layers and
pooling, the input size and the data), a SHA-256 per file, and whether the
store is complete. Every file is written to a temporary name and renamed.
An interrupted extraction resumes from the last complete shard.

Sharded extraction: `extract_features(..., shard=(index, count))` writes
rows `[index * N // count, (index + 1) * N // count)` as a part store,
`part-<index>-of-<count>/`, inside the store directory, so N processes or
machines write one store without touching each other's files. The parts
join into the store's `manifest.json` (`Features.merge`, or on load) once
all are complete, with the same key, and cover the rows without a gap or
an overlap.
"""

import collections
import concurrent.futures
import dataclasses
import hashlib
import json
import os
import pathlib
import time
import warnings

import keras
import numpy as np

from keras_transfer import factory, freezing, precision
from keras_transfer.image_folder import read_image
from keras_transfer.layers import ImagePreprocessing
from keras_transfer.weights import _atomic_write

FORMAT = 1
SHARD_SIZE = 2048


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
        """Saves to one `.npz` file (atomically), or a sharded store directory."""
        path = pathlib.Path(path)
        if path.suffix == ".npz":
            _write_npz(path, self)
        else:
            writer = _StoreWriter(path, self.manifest.get("key", {}), overwrite=True)
            writer.write_shard(self.features, self.labels)
            writer.finish(self.class_names)
        return path

    @classmethod
    def load(cls, path, mmap=True):
        """Loads a store written by `extract_features(cache=...)` or `.save()`.

        Checks every file against the manifest's checksum and refuses an
        incomplete store.
        """
        path = pathlib.Path(path)
        if path.suffix == ".npz":
            return _read_npz(path)
        manifest = _read_manifest(path)
        if manifest is None and _part_dirs(path):
            manifest = _merge_parts(path)  # parts not merged yet: join them here
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
        return _load_shards(path, manifest, mmap=mmap)

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
        manifest = _merge_parts(path)
        text = json.dumps(manifest, indent=1, default=str).encode()
        _atomic_write(path / "manifest.json", lambda handle: handle.write(text))
        return _load_shards(path, manifest, mmap=True)


def extract_features(
    backbone_or_model,
    data,
    *,
    layers=None,
    pooling="avg",
    batch_size=100,
    cache=None,
    dtype="float32",
    progress=True,
    overwrite=False,
    fusion="concat",
    input_shape=None,
    weights="imagenet",
    shard_size=SHARD_SIZE,
    shard=None,
    mixed_precision="auto",
):
    """Runs a frozen backbone over data in batches and returns its features.

    Example:

    >>> images = np.random.uniform(0, 255, (6, 32, 32, 3)).astype("float32")
    >>> feats = keras_transfer.extract_features(
    ...     "mobilenet", (images, np.arange(6) % 2), weights=None,
    ...     input_shape=(32, 32, 3), batch_size=4, progress=False)
    >>> feats.x.shape, feats.labels.tolist()
    ((6, 1024), [0, 1, 0, 1, 0, 1])

    Args:
        backbone_or_model: anything `transfer()` accepts (a feature model is
            built with `strategy="feature_extraction"`), a list of them (each
            gives a set, plus their fusion), or a feature `keras.Model`.
        data: a numpy array of images, a pair `(images, labels)`, a
            `tf.data.Dataset`, a `keras.utils.PyDataset`, a generator of
            batches, or a directory of class sub-folders of images.
        layers: feature layer(s) (see `transfer(feature_layer=...)`); a list
            gives one feature set per layer, in one pass.
        pooling: as for `transfer()`.
        batch_size: images per batch for arrays and directories.
        cache: `None` (in memory), a directory (sharded store) or a `.npz`.
        dtype: dtype of the stored features.
        progress: show a progress bar with images/s.
        overwrite: replace a store whose key does not match.
        fusion: `FeatureFusion` mode for a list of backbones.
        input_shape, weights: passed to `transfer()` when it builds the model.
        shard_size: rows per shard of a sharded store.
        shard: `(index, count)`: extract only part `index` of `count` of
            the data (arrays or a directory) into `cache`, a directory that
            all parts share; returns that part's features. The last part to
            finish merges the store (see `Features.merge`).
        mixed_precision: as for `transfer()`; "auto" is bfloat16 or float16
            on a GPU, float32 on CPU. Features are stored as `dtype`.

    Returns:
        A `Features`.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer. Received: batch_size={batch_size!r}")
    shard = _check_shard(shard, cache)
    policy = precision.resolve(mixed_precision)
    models = _feature_models(backbone_or_model, layers, pooling, input_shape, weights, policy)
    source = _DataSource(data, batch_size, models[0][1].input_shape[1:])
    key = {
        "models": [_model_key(model, cache is not None) for _, model in models],
        "layers": layers if layers is not None else "last_conv",
        "pooling": pooling,
        "fusion": fusion if len(models) > 1 else None,
        "dtype": dtype,
        "data": source.fingerprint(),
    }
    if policy != "float32":  # float32 stores keep the ids they had
        key["policy"] = policy
    key["id"] = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    if shard is not None:
        return _extract_part(models, source, key, pathlib.Path(cache), shard, dtype, progress,
                             fusion, layers, shard_size, overwrite)
    if cache is not None and str(cache).endswith(".npz"):
        cached = _read_npz(pathlib.Path(cache)) if pathlib.Path(cache).exists() else None
        if cached is not None:
            _check_key(cached.manifest.get("key", {}), key, cache, overwrite)
            if cached.manifest.get("key", {}).get("id") == key["id"]:
                return cached
        result = _run(models, source, None, 0, None, dtype, progress, fusion, layers)
        result.manifest = {"format": FORMAT, "key": key, "complete": True, "rows": len(result)}
        _write_npz(pathlib.Path(cache), result)
        return result
    writer = None
    start = 0
    if cache is not None:
        writer = _StoreWriter(pathlib.Path(cache), key, overwrite=overwrite)
        if writer.complete:
            return _load_shards(writer.path, writer.manifest, mmap=True)
        start = writer.rows
    result = _run(models, source, writer, start, None, dtype, progress, fusion, layers,
                  shard_size)
    if writer is not None:
        writer.finish(source.class_names)
        return _load_shards(writer.path, writer.manifest, mmap=True)
    result.manifest = {"format": FORMAT, "key": key, "complete": True, "rows": len(result)}
    return result


def _check_shard(shard, cache):
    if shard is None:
        return None
    if (not isinstance(shard, (tuple, list)) or len(shard) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in shard)
            or not 0 <= shard[0] < shard[1]):
        raise ValueError(
            "`shard` must be a pair (index, count) of ints with 0 <= index < count. "
            f"Received: shard={shard!r}"
        )
    if cache is None or str(cache).endswith(".npz"):
        raise ValueError(
            "`shard` writes one part of a store directory that all parts share: "
            f"pass cache=<directory>. Received: cache={cache!r}"
        )
    return tuple(shard)


def _extract_part(models, source, key, root, shard, dtype, progress, fusion, layers,
                  shard_size, overwrite):
    index, count = shard
    total = source.size()
    if total is None:
        raise ValueError(
            "`shard` splits data of known size: an array or a directory. Shard a "
            "stream yourself (`dataset.shard(count, index)`) and give each part its "
            f"own cache. Received: data of type {type(source.data).__name__}"
        )
    begin, end = index * total // count, (index + 1) * total // count
    writer = _StoreWriter(root / _part_name(index, count), key, overwrite=overwrite)
    writer.manifest["part"] = {"index": index, "count": count, "start": begin, "stop": end,
                               "total": total}
    if not writer.complete:
        # Rows [begin, end) of the data; an interrupted part resumes.
        _run(models, source, writer, begin + writer.rows, end, dtype, progress, fusion, layers,
             shard_size)
        writer.manifest["part"]["skipped"] = len(source.skipped)
        writer.finish(source.class_names)
    parts = _part_dirs(root)
    if len(parts) == count and all(
            (_read_manifest(p) or {}).get("complete") for p in parts.values()):
        try:
            Features.merge(root)  # the last part to finish; a fault is raised on load
        except ValueError:
            pass
    return _load_shards(writer.path, writer.manifest, mmap=True)


def _part_name(index, count):
    return f"part-{index:05d}-of-{count:05d}"


def _part_dirs(root):
    """{part directory name: path} of the parts in a store directory."""
    root = pathlib.Path(root)
    if not root.is_dir():
        return {}
    return {p.name: p for p in sorted(root.glob("part-*-of-*")) if p.is_dir()}


def _merge_parts(root):
    """The manifest that joins a store's parts; a `ValueError` lists faults."""
    parts = {name: _read_manifest(path) for name, path in _part_dirs(root).items()}
    if not parts:
        raise FileNotFoundError(
            f"No parts of a sharded extraction in {str(root)!r} (no part-*-of-* "
            f"folders). Received: path={str(root)!r}"
        )
    faults = []
    described = {}
    for name, manifest in parts.items():
        if manifest is None or "part" not in manifest:
            faults.append(f"{name}: no manifest (its extraction has not started)")
        elif not manifest.get("complete"):
            faults.append(f"{name}: incomplete ({manifest['rows']} rows of "
                          f"{manifest['part']['stop'] - manifest['part']['start']})")
        else:
            described[name] = manifest
    counts = {m["part"]["count"] for m in described.values()}
    if len(counts) > 1:
        faults.append(f"parts of different splits: counts {sorted(counts)}")
    count = max(counts | {len(parts)})
    missing = [_part_name(i, count) for i in range(count) if _part_name(i, count) not in parts]
    if missing:
        faults.append(f"missing parts: {missing}")
    ids = collections.defaultdict(list)
    for name, manifest in described.items():
        ids[manifest["key"]["id"]].append(name)
    if len(ids) > 1:
        faults.append("parts made with different settings (backbone, weights, layers or "
                      f"data): {dict(ids)}")
    ordered = sorted(described.items(), key=lambda item: item[1]["part"]["start"])
    position = 0
    for name, manifest in ordered:
        part = manifest["part"]
        if part["start"] > position:
            faults.append(f"gap: rows {position}..{part['start']} are in no part")
        elif part["start"] < position:
            faults.append(f"overlap: {name} starts at row {part['start']}, before row "
                          f"{position} where the part before it ends")
        if manifest["rows"] + part.get("skipped", 0) != part["stop"] - part["start"]:
            faults.append(f"{name}: {manifest['rows']} rows for range "
                          f"{part['start']}..{part['stop']}")
        position = max(position, part["stop"])
    totals = {m["part"]["total"] for m in described.values()}
    if described and (len(totals) > 1 or position != max(totals)):
        faults.append(f"the parts end at row {position}, the data has {sorted(totals)} rows")
    if faults:
        raise ValueError(
            f"Cannot merge the sharded feature store at {str(root)!r}: "
            + "; ".join(faults) + ". Run the missing or failed parts with the same arguments."
        )
    first = ordered[0][1]
    shards = [
        {"rows": shard["rows"], "files": {
            set_name: dict(entry, file=f"{name}/{entry['file']}")
            for set_name, entry in shard["files"].items()}}
        for name, manifest in ordered for shard in manifest["shards"]
    ]
    return {"format": FORMAT, "key": first["key"], "complete": True,
            "rows": sum(m["rows"] for _, m in ordered), "shards": shards,
            "class_names": first.get("class_names"), "parts": len(ordered)}


# --- Models -------------------------------------------------------------------


def _feature_models(backbone_or_model, layers, pooling, input_shape, weights, policy):
    """[(label, frozen feature model with one output per layer)]."""
    items = backbone_or_model if isinstance(backbone_or_model, (list, tuple)) else [backbone_or_model]
    taps = list(layers) if isinstance(layers, (list, tuple)) else [layers or "last_conv"]
    models = []
    for index, item in enumerate(items):
        if isinstance(item, keras.Model) and layers is None and len(item.output.shape) == 2:
            label, model = item.name, item  # already a feature model
        else:
            with precision.policy_scope(policy):
                source = factory.resolve(item, factory._check_input_shape(input_shape), weights)
                precision.apply(source.model, policy)
                shape = input_shape or tuple(source.model.input_shape[1:3]) + (3,)
                inputs = keras.Input(shape, name="image")
                x = ImagePreprocessing(source.preprocessing, dtype="float32",
                                       name="preprocessing")(inputs)
                backbone = factory.build_backbone(source, taps, pooling, separate=True)
                freezing.freeze(backbone)
                label, model = source.label.lower(), keras.Model(inputs, backbone(x))
        models.append((label if len(items) == 1 else f"{index}_{label}", model))
    return models


def _model_key(model, hash_weights=True):
    # Hashing a ResNet50's 100 MB of weights takes longer than extracting a
    # few thousand images on a GPU: it is done only for a store to protect.
    digest = hashlib.sha256()
    for weight in model.weights if hash_weights else []:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
    # Layer types and weight shapes, in order: stable across sessions, where
    # Keras's auto-generated layer names are not.
    architecture = json.dumps([
        (type(layer).__name__, [list(w.shape) for w in layer.weights])
        for layer in _leaves(model)
    ])
    return {
        "architecture": hashlib.sha256(architecture.encode()).hexdigest()[:16],
        "weights": digest.hexdigest()[:16] if hash_weights else None,
        "input_shape": list(model.input_shape[1:]),
        "preprocessing": [layer.mode for layer in model.layers if hasattr(layer, "mode")],
    }


def _leaves(model):
    if hasattr(model, "layers") and model.layers:
        return [leaf for layer in model.layers for leaf in _leaves(layer)]
    return [model]


def _set_names(models, layers):
    taps = list(layers) if isinstance(layers, (list, tuple)) else None
    names = []
    for label, model in models:
        count = len(model.outputs)
        for index in range(count):
            tap = taps[index] if taps and count == len(taps) else None
            if len(models) == 1:
                names.append(tap or "features")
            else:
                names.append(f"{label}/{tap}" if tap else label)
    return names


# --- Data -----------------------------------------------------------------------


class _DataSource:
    """Turns any supported `data` into batches of `(images, labels or None)`."""

    def __init__(self, data, batch_size, image_shape):
        self.data, self.batch_size, self.image_shape = data, batch_size, tuple(image_shape)
        self.class_names = None
        self.labels = None
        self.skipped = []
        if isinstance(data, (str, os.PathLike)):
            self._from_directory(pathlib.Path(data))
        elif isinstance(data, np.ndarray):
            self.images = data
        elif isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], np.ndarray):
            self.images, self.labels = data[0], np.asarray(data[1])
            if len(self.labels) != len(self.images):
                raise ValueError(
                    f"`data` labels do not match the images. Received: "
                    f"{len(self.images)} images and {len(self.labels)} labels"
                )
        else:
            self.images = None  # a stream: tf.data, PyDataset or generator
        if self.images is not None:
            self._check_shape(self.images.shape[1:])
            if len(self.images) == 0:
                raise ValueError("`data` is empty. Received: an array with 0 images")

    def _check_shape(self, shape):
        if len(shape) != 3 or shape[-1] not in (1, 3) or (
            self.image_shape[:2] != (None, None) and tuple(shape[:2]) != self.image_shape[:2]
        ):
            raise ValueError(
                f"Images must have shape {self.image_shape} (height, width, 1 or 3 "
                f"channels). Received: images of shape {tuple(shape)}"
            )

    def _from_directory(self, root):
        if not root.is_dir():
            raise FileNotFoundError(f"No image directory at {str(root)!r}. Received: data={str(root)!r}")
        classes = sorted(p.name for p in root.iterdir() if p.is_dir())
        if not classes:
            raise ValueError(
                f"`data` directory {str(root)!r} has no class sub-folders. Received: "
                f"{sorted(p.name for p in root.iterdir())[:10]}"
            )
        paths, labels = [], []
        for index, name in enumerate(classes):
            for path in sorted((root / name).rglob("*")):
                if path.is_file():
                    paths.append(path)
                    labels.append(index)
        if not paths:
            raise ValueError(f"`data` directory {str(root)!r} holds no files.")
        self.class_names, self.paths, self.path_labels = classes, paths, np.array(labels)
        self.images = None

    def fingerprint(self):
        digest = hashlib.sha256()
        if getattr(self, "paths", None) is not None:
            for path in self.paths:
                stat = path.stat()
                digest.update(f"{path.name}|{stat.st_size}|{int(stat.st_mtime)}".encode())
            return {"kind": "directory", "count": len(self.paths), "sha256": digest.hexdigest()[:16]}
        if self.images is not None:
            # Shape plus a strided sample of rows: cheap for millions of images.
            step = max(1, len(self.images) // 64)
            digest.update(str(self.images.shape).encode())
            digest.update(np.ascontiguousarray(self.images[::step]).tobytes())
            if self.labels is not None:
                digest.update(np.ascontiguousarray(self.labels).tobytes())
            return {"kind": "array", "count": len(self.images), "sha256": digest.hexdigest()[:16]}
        return {"kind": type(self.data).__name__, "count": None, "sha256": None}

    def size(self):
        """Rows in the data, or `None` for a stream."""
        if getattr(self, "paths", None) is not None:
            return len(self.paths)
        return None if self.images is None else len(self.images)

    def batches(self, start=0, stop=None):
        """Yields `(images, labels)` for rows `start` to `stop` (a stream: from
        `start` on)."""
        if getattr(self, "paths", None) is not None:
            yield from self._directory_batches(start, stop)
        elif self.images is not None:
            stop = len(self.images) if stop is None else stop
            for i in range(start, stop, self.batch_size):
                j = min(i + self.batch_size, stop)
                yield self.images[i:j], None if self.labels is None else self.labels[i:j]
        else:
            yield from self._stream_batches(start)

    def _directory_batches(self, start, stop):
        # Threads decode (PIL releases the GIL) the next batch while the
        # model runs on this one. Pixels stay uint8: a quarter of float32's
        # bytes reach the device, and the model casts them there.
        size = self.image_shape[:2]
        paths, labels = self.paths[start:stop], self.path_labels[start:stop]
        chunks = (range(i, min(i + self.batch_size, len(paths)))
                  for i in range(0, len(paths), self.batch_size))
        with concurrent.futures.ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
            pending = collections.deque()
            for rows in chunks:
                pending.append((rows, [pool.submit(read_image, paths[r], size) for r in rows]))
                if len(pending) < 2:
                    continue
                yield from self._collect(*pending.popleft(), paths, labels)
            while pending:
                yield from self._collect(*pending.popleft(), paths, labels)

    def _collect(self, rows, futures, paths, labels):
        images, kept = [], []
        for row, future in zip(rows, futures):
            try:
                images.append(future.result())
                kept.append(labels[row])
            except Exception as error:  # PIL raises many types for bad files
                self.skipped.append(f"{paths[row].name} ({type(error).__name__})")
        if images:
            yield np.stack(images), np.array(kept)

    def _stream_batches(self, start):
        seen = 0
        data = self.data
        if hasattr(data, "as_numpy_iterator"):
            iterator = data.as_numpy_iterator()
        elif isinstance(data, keras.utils.PyDataset):
            iterator = (data[i] for i in range(len(data)))
        else:
            iterator = data
        for batch in iterator:
            images, labels = (batch if isinstance(batch, tuple) else (batch, None))
            images = np.asarray(images)
            self._check_shape(images.shape[1:])
            labels = None if labels is None else np.asarray(labels)
            if labels is not None and len(labels) != len(images):
                raise ValueError(
                    f"A batch's labels do not match its images. Received: "
                    f"{len(images)} images and {len(labels)} labels"
                )
            if seen + len(images) <= start:
                seen += len(images)
                continue
            skip = max(start - seen, 0)
            seen += len(images)
            yield images[skip:], None if labels is None else labels[skip:]


# --- Running and writing ------------------------------------------------------------


def _run(models, source, writer, start, stop, dtype, progress, fusion, layers,
         shard_size=SHARD_SIZE):
    names = _set_names(models, layers)
    chunks, label_chunks = {}, []
    buffered = 0
    total = source.size() if stop is None else stop
    bar = keras.utils.Progbar(total, unit_name="image") if progress else None
    done, began = start, time.perf_counter()
    full = None
    for images, labels in source.batches(start, stop):
        # A short last batch is padded to the first batch's size, so the
        # compiled predict function is reused instead of traced again.
        full = full or len(images)
        padded = images
        if len(images) < full:
            padded = np.concatenate([images, np.repeat(images[-1:], full - len(images), 0)])
        outputs = []
        for label, model in models:
            result = model.predict_on_batch(padded)
            outputs.extend(result if isinstance(result, (list, tuple)) else [result])
        outputs = [np.asarray(keras.ops.convert_to_numpy(o), dtype=dtype)[:len(images)]
                   for o in outputs]
        for name, array in zip(names, outputs):
            if not np.all(np.isfinite(array)):
                raise ValueError(
                    f"NaN or Inf in the features of {name!r} (rows {done}..."
                    f"{done + len(array)}): check the input pixels and the weights."
                )
            chunks.setdefault(name, []).append(array)
        if labels is not None:
            label_chunks.append(np.asarray(labels).astype("int64"))
        done += len(images)
        buffered += len(images)
        if bar is not None:
            rate = (done - start) / max(time.perf_counter() - began, 1e-9)
            bar.update(done, values=[("images/s", rate)], finalize=False)
        if writer is not None and buffered >= shard_size:
            writer.write_shard(_concat(chunks), _concat_labels(label_chunks))
            chunks, label_chunks, buffered = {}, [], 0
    if source.skipped:
        warnings.warn(
            f"Skipped {len(source.skipped)} file(s) that could not be decoded as "
            f"images: {source.skipped[:10]}", stacklevel=3)
    if done == 0 and (writer is None or writer.rows == 0):
        raise ValueError("`data` is empty: it yielded no images.")
    if bar is not None:
        bar.update(done, finalize=True)
    if writer is not None:
        if buffered:
            writer.write_shard(_concat(chunks), _concat_labels(label_chunks))
        return None
    features = _concat(chunks)
    if len(models) > 1:
        features["fused"] = _fuse(features, fusion)
    return Features(features, _concat_labels(label_chunks), source.class_names)


def _concat(chunks):
    return {name: np.concatenate(parts) for name, parts in chunks.items()}


def _concat_labels(chunks):
    return np.concatenate(chunks) if chunks else None


def _fuse(features, fusion):
    from keras_transfer.layers import FeatureFusion

    arrays = [a for name, a in features.items() if name != "fused"]
    return np.asarray(keras.ops.convert_to_numpy(FeatureFusion(fusion)(arrays)))


class _StoreWriter:
    def __init__(self, path, key, overwrite):
        self.path = path
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
        manifest = _read_manifest(path)
        if manifest is not None:
            _check_key(manifest.get("key", {}), key, path, overwrite)
            if manifest["key"].get("id") != key.get("id"):
                manifest = None
            else:
                _verify(path, manifest)
        if manifest is None:
            for old in path.glob("shard_*.npy"):
                old.unlink()
            manifest = {"format": FORMAT, "key": key, "complete": False, "rows": 0, "shards": []}
        self.manifest = manifest

    @property
    def rows(self):
        return self.manifest["rows"]

    @property
    def complete(self):
        return self.manifest["complete"]

    def write_shard(self, features, labels):
        index = len(self.manifest["shards"])
        files = {}
        arrays = dict(features)
        if labels is not None:
            arrays["__labels__"] = labels
        for number, (name, array) in enumerate(arrays.items()):
            filename = f"shard_{index:05d}_{number}.npy"
            _atomic_write(self.path / filename, lambda h, a=array: np.save(h, a))
            files[name] = {"file": filename, "sha256": _sha256(self.path / filename),
                           "shape": list(array.shape)}
        rows = len(next(iter(features.values())))
        self.manifest["shards"].append({"rows": rows, "files": files})
        self.manifest["rows"] += rows
        self._save()

    def finish(self, class_names):
        self.manifest["complete"] = True
        self.manifest["class_names"] = class_names
        self._save()

    def _save(self):
        text = json.dumps(self.manifest, indent=1, default=str).encode()
        _atomic_write(self.path / "manifest.json", lambda h: h.write(text))


def _read_manifest(path):
    manifest = pathlib.Path(path) / "manifest.json"
    if not manifest.is_file():
        return None
    return json.loads(manifest.read_text())


def _check_key(found, expected, path, overwrite):
    if not found or found.get("id") == expected.get("id") or overwrite:
        return
    differs = [k for k in ("models", "layers", "pooling", "fusion", "dtype", "data")
               if found.get(k) != expected.get(k)]
    raise ValueError(
        f"The feature store at {str(path)!r} was made with different settings "
        f"(they differ in: {', '.join(differs)}); it may come from another backbone "
        "or data. Pass overwrite=True to replace it, or another cache path."
    )


def _verify(path, manifest):
    for shard in manifest["shards"]:
        for name, entry in shard["files"].items():
            file = path / entry["file"]
            if not file.is_file() or _sha256(file) != entry["sha256"]:
                raise ValueError(
                    f"Corrupt feature store at {str(path)!r}: shard file "
                    f"{entry['file']!r} ({name}) is missing or fails its checksum. "
                    "Delete the store, or pass overwrite=True, to extract again."
                )


def _load_shards(path, manifest, mmap=True):
    _verify(path, manifest)
    sets, labels = {}, []
    for shard in manifest["shards"]:
        for name, entry in shard["files"].items():
            array = np.load(path / entry["file"], mmap_mode="r" if mmap else None)
            (labels if name == "__labels__" else sets.setdefault(name, [])).append(array)
    if len(manifest["shards"]) == 1 and mmap:
        features = {name: parts[0] for name, parts in sets.items()}
    else:
        features = {name: np.concatenate(parts) for name, parts in sets.items()}
    label_array = (labels[0] if len(labels) == 1 else np.concatenate(labels)) if labels else None
    if len(sets) > 1 and "fused" not in features and manifest["key"].get("fusion"):
        features["fused"] = _fuse(features, manifest["key"]["fusion"])
    return Features(features, label_array, manifest.get("class_names"), manifest)


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_npz(path, features):
    arrays = {f"features/{name}": array for name, array in features.features.items()}
    if features.labels is not None:
        arrays["labels"] = features.labels
    manifest = dict(features.manifest, class_names=features.class_names)
    arrays["manifest"] = np.array(json.dumps(manifest, default=str))
    _atomic_write(path, lambda handle: np.savez(handle, **arrays))


def _read_npz(path):
    try:
        with np.load(path) as data:
            manifest = json.loads(str(data["manifest"]))
            features = {k.split("/", 1)[1]: data[k] for k in data.files if k.startswith("features/")}
            labels = data["labels"] if "labels" in data.files else None
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(f"{str(path)!r} is not a feature store .npz ({error}).") from error
    return Features(features, labels, manifest.get("class_names"), manifest)
