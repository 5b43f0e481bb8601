"""`extract_features`: a frozen backbone over data, in batches, to memory or
to a feature store that answers only for the same model and data."""

import hashlib
import json
import math
import pathlib
import shutil
import tempfile
import time
import warnings

import keras
import numpy as np

from keras_transfer import factory
from keras_transfer.features import store
from keras_transfer.features.features import Features
from keras_transfer.features.sources import DataSource, RowDigest
from keras_transfer.images.stream import check_shard
from keras_transfer.rates import precision
from keras_transfer.utils import guards

__all__ = ["extract_features"]


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
    shard_size=store.SHARD_SIZE,
    shard=None,
    mixed_precision="auto",
    steps=None,
):
    """Runs a frozen backbone over data in batches and returns its features.

    A store (`cache`) answers only for the data it was made from: an
    array's every row and label are hashed, a directory's class names and
    files (relative path, size, modification time, inode), and a stream's rows are
    hashed shard by shard as they are read again (reading is cheap next to
    the backbone), so a stream that differs is refused, never answered.

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
            batches, or a directory of class sub-folders of images (one
            split: for a `train/` `val/` root, pass `root/train`).
        layers: feature layer(s) (see `transfer(feature_layer=...)`); a list
            gives one feature set per layer, in one pass.
        pooling: as for `transfer()`.
        batch_size: images per batch for arrays and directories.
        cache: `None` (in memory), a directory (sharded store) or a `.npz`.
            A directory must be new, empty or a store; a `.npz` new or a
            store.
        dtype: dtype of the stored features.
        progress: show a progress bar with images/s.
        overwrite: replace a store whose key does not match. A stream
            (which is known only by reading it) is then extracted afresh.
        fusion: `FeatureFusion` mode for a list of backbones.
        input_shape, weights: passed to `transfer()` when it builds the model.
        shard_size: rows per shard of a sharded store.
        shard: `(index, count)`: extract only part `index` of `count` of
            the data (arrays or a directory) into `cache`, a directory that
            all parts share; returns that part's features. The last part to
            finish merges the store (see `Features.merge`).
        mixed_precision: as for `transfer()`; "auto" is bfloat16 or float16
            on a GPU, float32 on CPU. Features are stored as `dtype`.
        steps: for a stream, the number of batches to read (as `predict`'s
            `steps`). An infinite stream (`tf.data` after `.repeat()`, a
            PyDataset without a length) needs it; one of unknown length
            without it is read to its end, but stops with an error once
            its features pass half the free memory (or, to a store, half
            the free disk).

    Returns:
        A `Features`.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(
            f"`batch_size` must be a positive integer. Received: batch_size={batch_size!r}"
        )
    if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool) or steps < 1):
        raise ValueError(f"`steps` must be a positive integer or None. Received: steps={steps!r}")
    shard = _check_shard(shard, cache)
    policy = precision.resolve(mixed_precision)
    models = _feature_models(backbone_or_model, layers, pooling, input_shape, weights, policy)
    source = DataSource(data, batch_size, models[0][1].input_shape[1:], steps=steps)
    key = {
        "models": [_model_key(model, cache is not None) for _, model in models],
        "layers": layers if layers is not None else "last_conv",
        "pooling": pooling,
        "fusion": fusion if len(models) > 1 else None,
        "dtype": dtype,
        "data": source.fingerprint(hash_data=cache is not None),
    }
    if policy != "float32":  # float32 stores keep the ids they had
        key["policy"] = policy
    key["id"] = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    run = dict(dtype=dtype, progress=progress, fusion=fusion, layers=layers)
    if shard is not None:
        return _extract_part(
            models, source, key, pathlib.Path(cache), shard, shard_size, overwrite, run
        )
    if cache is not None and str(cache).endswith(".npz"):
        return _extract_npz(models, source, key, pathlib.Path(cache), overwrite, run)
    if cache is None:
        result = _run(models, source, None, 0, None, **run)
        result.manifest.update(
            {"format": store.FORMAT, "key": key, "complete": True, "rows": len(result)}
        )
        return result
    with store.StoreWriter(pathlib.Path(cache), key, overwrite=overwrite) as writer:
        if source.is_stream and writer.rows:
            _check_stream(source, writer.manifest["shards"], writer.complete, cache)
        if not writer.complete:
            _run(models, source, writer, writer.rows, None, shard_size=shard_size, **run)
            writer.finish(source.class_names)
    return Features.from_store(writer.path, writer.manifest)


def _extract_npz(models, source, key, path, overwrite, run):
    if path.exists():
        features, labels, class_names, manifest = store.read_npz(path)  # not a store: refused
        found = manifest.get("key", {})
        if found.get("id") == key["id"] and not (overwrite and source.is_stream):
            if source.is_stream:
                _check_stream(
                    source,
                    [{"rows": manifest["rows"], "data_sha256": manifest.get("data_sha256")}],
                    True,
                    path,
                )
            return Features(features, labels, class_names, manifest)
        store.check_key(found, key, path, overwrite)
    else:
        _check_writable(path)  # before the extraction, not after it
    result = _run(models, source, None, 0, None, **run)
    result.manifest.update(
        {"format": store.FORMAT, "key": key, "complete": True, "rows": len(result)}
    )
    store.write_npz(path, result.features, result.labels, result.class_names, result.manifest)
    return result


def _check_stream(source, shards, whole, cache):
    """A store made from a stream answers only if the stream's rows hash the same."""
    _, differs = source.verify_prefix(shards, whole=whole)
    if differs is not None:
        first, last = differs
        rows = f"rows {first}..{last}" if last is not None else f"rows from {first} on"
        raise ValueError(
            f"The feature store at {str(cache)!r} was made from other data: {rows} of "
            "`data` differ from the rows it was made from. Pass another cache path, or "
            "overwrite=True (with the stream from its start) to extract it afresh."
        )


def _check_writable(path):
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as error:
        raise PermissionError(
            f"The cache's folder is not writable. Received: cache={str(path)!r} ({error.strerror})"
        ) from error


def _check_shard(shard, cache):
    if shard is None:
        return None
    check_shard(shard)
    if cache is None or str(cache).endswith(".npz"):
        raise ValueError(
            "`shard` writes one part of a store directory that all parts share: "
            f"pass cache=<directory>. Received: cache={cache!r}"
        )
    return tuple(shard)


def _extract_part(models, source, key, root, shard, shard_size, overwrite, run):
    index, count = shard
    total = source.size()
    if total is None:
        raise ValueError(
            "`shard` splits data of known size: an array or a directory. Shard a "
            "stream yourself (`dataset.shard(count, index)`) and give each part its "
            f"own cache. Received: data of type {type(source.data).__name__}"
        )
    if root.is_dir():
        foreign = sorted(
            p.name
            for p in root.iterdir()
            if not p.name.startswith(".")
            and p.name != store.MANIFEST
            and not p.name.startswith("part-")
        )
        if foreign:
            raise FileExistsError(
                f"`cache` directory {str(root)!r} is not a sharded feature store and is "
                f"not empty: {foreign[:5]}. Nothing in it was touched; pass a new or "
                f"empty directory. Received: cache={str(root)!r}"
            )
    begin, end = index * total // count, (index + 1) * total // count
    with store.StoreWriter(
        root / store.part_name(index, count), key, overwrite=overwrite
    ) as writer:
        writer.manifest["part"] = {
            "index": index,
            "count": count,
            "start": begin,
            "stop": end,
            "total": total,
        }
        if not writer.complete:
            # Rows [begin, end) of the data; an interrupted part resumes.
            _run(models, source, writer, begin + writer.rows, end, shard_size=shard_size, **run)
            writer.manifest["part"]["skipped"] = len(source.skipped)
            writer.finish(source.class_names)
    parts = store.part_dirs(root)
    if len(parts) == count and all(
        (store.read_manifest(p) or {}).get("complete") for p in parts.values()
    ):
        try:
            Features.merge(root)  # the last part to finish; a fault is raised on load
        except ValueError:
            pass
    return Features.from_store(writer.path, writer.manifest)


def _feature_models(backbone_or_model, layers, pooling, input_shape, weights, policy):
    """[(label, frozen feature model with one output per layer)]."""
    items = (
        backbone_or_model if isinstance(backbone_or_model, (list, tuple)) else [backbone_or_model]
    )
    taps = list(layers) if isinstance(layers, (list, tuple)) else [layers or "last_conv"]
    models = []
    for index, item in enumerate(items):
        if isinstance(item, keras.Model) and layers is None and len(item.output.shape) == 2:
            label, model = item.name, item  # already a feature model
        else:
            label, model = factory.build_feature_model(
                item, taps, pooling, input_shape, weights, policy
            )
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
    architecture = json.dumps(
        [(type(layer).__name__, [list(w.shape) for w in layer.weights]) for layer in _leaves(model)]
    )
    return {
        "architecture": hashlib.sha256(architecture.encode()).hexdigest()[:16],
        "weights": digest.hexdigest()[:16] if hash_weights else None,
        "input_shape": list(model.input_shape[1:]),
        "preprocessing": [layer.mode for layer in model.layers if hasattr(layer, "mode")]
        + [_converter(layer) for layer in model.layers if isinstance(layer, keras.Sequential)],
    }


def _converter(part):
    """A KerasHub preset's ImageConverter (scale, offset, size, interpolation):
    two presets with the same weights may differ only there."""
    configs = [
        {k: v for k, v in layer.get_config().items() if k not in ("name", "dtype", "trainable")}
        for layer in part.layers
    ]
    return hashlib.sha256(json.dumps(configs, sort_keys=True, default=str).encode()).hexdigest()[
        :16
    ]


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


def _run(
    models,
    source,
    writer,
    start,
    stop,
    dtype,
    progress,
    fusion,
    layers,
    shard_size=store.SHARD_SIZE,
):
    names = _set_names(models, layers)
    chunks, label_chunks = {}, []
    buffered = 0
    total = source.size() if stop is None else stop
    bar = keras.utils.Progbar(total, unit_name="image") if progress else None
    done, began = start, time.perf_counter()
    full = None
    # A stream is known only by its rows: each shard records their hash.
    shard_digest = RowDigest() if source.is_stream else None
    whole_digest = RowDigest() if source.is_stream else None
    budget = _stream_budget(source, writer)
    kept = 0
    # Kept in memory, with a known bound: each batch goes to its place in
    # one array, not into a list joined at the end (two copies at once).
    rows = source.most_rows() if writer is None else None
    for images, labels in source.batches(start, stop):
        # A short last batch is padded to the first batch's size, so the
        # compiled predict function is reused instead of traced again.
        full = full or len(images)
        padded = images
        if len(images) < full:
            padded = np.concatenate([images, np.repeat(images[-1:], full - len(images), 0)])
        outputs = []
        for _, model in models:
            result = model.predict_on_batch(padded)
            outputs.extend(result if isinstance(result, (list, tuple)) else [result])
        outputs = [
            np.asarray(keras.ops.convert_to_numpy(o), dtype=dtype)[: len(images)] for o in outputs
        ]
        for name, array in zip(names, outputs):
            if not np.all(np.isfinite(array)):
                raise ValueError(
                    f"NaN or Inf in the features of {name!r} (rows {done}..."
                    f"{done + len(array)}): check the input pixels and the weights."
                )
            if rows is None:
                chunks.setdefault(name, []).append(array)
            else:
                if name not in chunks:
                    chunks[name] = np.empty((rows, *array.shape[1:]), array.dtype)
                chunks[name][done : done + len(array)] = array
        if labels is not None:
            label_chunks.append(np.asarray(labels).astype("int64"))
        for digest in (shard_digest, whole_digest):
            if digest is not None:
                digest.update(images, labels)
        done += len(images)
        buffered += len(images)
        kept += sum(array.nbytes for array in outputs)
        if kept > budget:
            where = "in memory" if writer is None else f"in the store at {str(writer.path)!r}"
            raise ValueError(
                f"`data` has not ended after {done:,} images: their features take {kept:,} "
                f"bytes {where}, past the budget of {budget:,} (half the free "
                f"{'memory' if writer is None else 'disk'}) for a stream of unknown length. "
                "Pass steps=N (the batches to read), or a finite stream (dataset.take(n))."
            )
        if bar is not None:
            rate = (done - start) / max(time.perf_counter() - began, 1e-9)
            bar.update(done, values=[("images/s", rate)], finalize=False)
        if writer is not None and buffered >= shard_size:
            writer.write_shard(
                _concat(chunks),
                _concat_labels(label_chunks),
                shard_digest and shard_digest.hexdigest(),
            )
            chunks, label_chunks, buffered = {}, [], 0
            shard_digest = RowDigest() if source.is_stream else None
    if source.skipped:
        warnings.warn(
            f"Skipped {len(source.skipped)} file(s) that could not be decoded as "
            f"images: {source.skipped[:10]}",
            stacklevel=3,
        )
    if done == 0 and (writer is None or writer.rows == 0):
        raise ValueError("`data` is empty: it yielded no images.")
    if bar is not None:
        bar.update(done, finalize=True)
    if writer is not None:
        if buffered:
            writer.write_shard(
                _concat(chunks),
                _concat_labels(label_chunks),
                shard_digest and shard_digest.hexdigest(),
            )
        return None
    features = _concat(chunks) if rows is None else {n: a[:done] for n, a in chunks.items()}
    if len(models) > 1:
        features["fused"] = store.fuse(features, fusion)
    manifest = {} if whole_digest is None else {"data_sha256": whole_digest.hexdigest()}
    return Features(features, _concat_labels(label_chunks), source.class_names, manifest)


def _stream_budget(source, writer):
    """Bytes of features a stream of unknown length may fill before the
    extraction stops: half the free memory, or half the free disk of a store."""
    if not source.is_stream or source.steps is not None:
        return math.inf
    if writer is None:
        return guards.memory_budget()
    return shutil.disk_usage(writer.path).free // 2


def _concat(chunks):
    return {name: np.concatenate(parts) for name, parts in chunks.items()}


def _concat_labels(chunks):
    return np.concatenate(chunks) if chunks else None
