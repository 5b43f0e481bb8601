"""`ktr.rank` (`ktr.ranking.rank`): which backbone, and which layer, for a labelled task, from
transferability scores of frozen features (`ktr.transferability`), through
the feature store, so that asking again costs no extraction."""

import dataclasses
import hashlib
import json
import os
import pathlib
import time

import keras

from keras_transfer import factory
from keras_transfer.features import Features, extract_features, transferability
from keras_transfer.features import store as feature_store
from keras_transfer.features.sources import DataSource
from keras_transfer.utils._io import atomic_write

__all__ = ["DEFAULT_CACHE", "Ranking", "rank"]

# Where the stores live unless `cache=` says otherwise: beside Keras's own
# downloads (KERAS_HOME, or ~/.keras).
DEFAULT_CACHE = (
    pathlib.Path(os.environ.get("KERAS_HOME", pathlib.Path.home() / ".keras"))
    / "keras_transfer"
    / "rank"
)
_SPEC_KEYS = ("backbone", "weights", "input_shape", "backbone_kwargs", "name", "layer")


@dataclasses.dataclass
class Ranking:
    """What `rank` returns: one row per candidate, best first. It prints as a
    table; `to_dict()` and `to_dataframe()` convert it.

    Attributes:
        rows: a list of dicts: `rank`, `name`, each score, `width` (the
            feature width), `parameters` (of the feature model), `seconds`
            (building and extracting, or reading the store), `input_shape`,
            `cached` (answered from the store) and `error` (why a candidate
            has no scores, else None).
        by: the score that orders the rows.
        scores: the scores computed.
    """

    rows: list
    by: str
    scores: tuple

    @property
    def best(self):
        """The name of the first row."""
        return self.rows[0]["name"] if self.rows else None

    def to_dict(self):
        return {"by": self.by, "scores": list(self.scores), "rows": [dict(r) for r in self.rows]}

    def to_dataframe(self):
        """The rows as a `pandas.DataFrame` (pandas is not a dependency)."""
        import pandas

        return pandas.DataFrame(self.rows).set_index("rank")

    def __str__(self):
        header = ["rank", "name", *self.scores, "width", "parameters", "input", "seconds"]
        cells = (
            [header]
            + [
                [_cell(row.get(key)) for key in header[:-2]]
                # Each candidate runs at its own input size, or at `input_shape`.
                + ["x".join(map(str, row["input_shape"][:2])) if row.get("input_shape") else "-"]
                + [_cell(row["seconds"]) + (" (cached)" if row["cached"] else "")]
                for row in self.rows
            ]
        )
        wide = [max(len(line[i]) for line in cells) for i in range(len(header))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(line, wide)).rstrip() for line in cells]
        lines += [f"{row['name']}: {row['error']}" for row in self.rows if row["error"]]
        return "\n".join(lines + [f"(ranked by {self.by}, higher is better)"])

    __repr__ = __str__


def rank(
    candidates,
    data,
    *,
    layers=None,
    by="logme",
    scores=None,
    cache=DEFAULT_CACHE,
    batch_size=32,
    input_shape=None,
    progress=False,
):
    """Ranks backbones (or one backbone's layers) for `data` by
    transferability scores of their frozen features, best first.

    Each candidate's features are extracted once into a store under `cache`
    (by default `~/.keras/keras_transfer/rank`, or under `KERAS_HOME`), so a
    second call reads them back; the store answers only for the same data
    and the same weights. A candidate that fails to build or extract gets a
    row that says why; the others are still ranked.

    Example:

    >>> x = np.random.default_rng(0).uniform(0, 255, (12, 16, 16, 3))
    >>> def net(name):
    ...     return keras.Sequential(
    ...         [keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3, name=f"{name}_conv")],
    ...         name=name)
    >>> ranking = keras_transfer.rank(
    ...     [{"backbone": net("a"), "weights": None}, {"backbone": net("b"), "weights": None}],
    ...     (x, np.arange(12) % 2), scores=["logme"], cache=None)
    >>> [row["rank"] for row in ranking.rows], ranking.by
    ([1, 2], 'logme')

    Args:
        candidates: a list of what `transfer()` takes as `backbone`, or of
            dicts `{"backbone": ..., "weights": ..., "input_shape": ...,
            "backbone_kwargs": {...}, "name": ...}`, so that one constructor
            with two settings (MobileNetV2 at `alpha` 0.35 and 1.0) or two
            weight files are two candidates. One candidate with `layers`
            ranks those layers.
        data: `(images, labels)`, a folder of class sub-folders, or anything
            `extract_features` takes that carries labels.
        layers: tap names (see `transfer(feature_layer=...)`): each is a
            row, for the one candidate given; a list of taps in the list
            is one row of multi-scale features (concatenated).
        by: the score that orders the rows (`ktr.transferability.SCORES`).
        scores: the scores to compute (default: all of
            `ktr.transferability.SCORES`).
        cache: the stores' root folder, or None to keep nothing.
        batch_size: of the extraction.
        input_shape: every candidate's input shape, unless its dict gives
            one (default: each backbone's own).
        progress: show extraction progress bars.

    Returns:
        A `Ranking`.
    """
    scores = tuple(transferability.SCORES) if scores is None else tuple(scores)
    unknown = [name for name in (*scores, by) if name not in transferability.SCORES]
    if unknown:
        raise ValueError(
            f"`scores` and `by` take {sorted(transferability.SCORES)}. Received: {unknown[0]!r}"
        )
    if by not in scores:
        scores = (by, *scores)
    specs = _specs(candidates, layers, input_shape)
    rows = [_row(spec, data, scores, cache, batch_size, progress) for spec in specs]
    scored = sorted((row for row in rows if row["error"] is None), key=lambda row: -row[by]) + [
        row for row in rows if row["error"] is not None
    ]
    for position, row in enumerate(scored, 1):
        row["rank"] = position if row["error"] is None else None
    return Ranking(scored, by, scores)


def _specs(candidates, layers, input_shape):
    items = list(candidates) if isinstance(candidates, (list, tuple)) else [candidates]
    if not items:
        raise ValueError("`candidates` must name at least one backbone. Received: an empty list")
    specs = []
    for item in items:
        spec = dict(item) if isinstance(item, dict) else {"backbone": item}
        extra = sorted(set(spec) - set(_SPEC_KEYS))
        if extra or "backbone" not in spec:
            raise ValueError(
                f"A candidate is a backbone, or a dict with the keys {list(_SPEC_KEYS[:5])} "
                f"('backbone' required). Received: a candidate with keys {sorted(spec)}"
            )
        spec.setdefault("weights", "imagenet")
        spec.setdefault("input_shape", input_shape)
        spec.setdefault("name", _name(spec))
        specs.append(spec)
    if layers is not None:
        if len(specs) != 1:
            raise ValueError(
                "`layers` ranks the layers of one backbone. Received: layers with "
                f"{len(specs)} candidates"
            )
        taps = [layers] if isinstance(layers, str) else list(layers)
        specs = [{**specs[0], "layer": tap, "name": f"{specs[0]['name']}:{tap}"} for tap in taps]
    names = [spec["name"] for spec in specs]
    if len(set(names)) < len(names):
        raise ValueError(
            f"Each candidate needs its own name (give 'name' in its dict). Received: {names}"
        )
    return specs


def _name(spec):
    backbone = spec["backbone"]
    label = backbone if isinstance(backbone, str) else getattr(backbone, "__name__", None)
    label = label or getattr(getattr(backbone, "func", None), "__name__", None)
    label = label or getattr(backbone, "name", type(backbone).__name__)
    kwargs = ",".join(f"{k}={v}" for k, v in sorted((spec.get("backbone_kwargs") or {}).items()))
    return f"{label}({kwargs})" if kwargs else str(label)


def _row(spec, data, scores, cache, batch_size, progress):
    row = {"rank": None, "name": spec["name"], **dict.fromkeys(scores)}
    row.update(width=None, parameters=None, seconds=None, input_shape=None, cached=False)
    row["error"] = None
    start = time.perf_counter()
    store = None if cache is None else pathlib.Path(cache) / _folder(spec)
    try:
        identity = _identity(spec, data, store)
        features, facts = _read_back(store, identity)
        if features is None:
            features, facts = _extract(spec, data, store, batch_size, progress)
            _remember(store, identity, features, facts)
    except Exception as error:  # noqa: BLE001 - the row says why; the others are still ranked
        row["error"] = f"{type(error).__name__}: {error}"
        row["seconds"] = round(time.perf_counter() - start, 2)
        return row
    if features.labels is None:
        raise ValueError(
            "`data` must carry labels to rank by them: (images, labels) or a folder of class "
            "sub-folders. Received: data without labels"
        )
    try:
        for score in scores:
            row[score] = transferability.SCORES[score](features.x, features.labels)
    except ValueError as error:  # the data's fault, not the candidate's: every row would fail
        raise ValueError(f"`data` cannot rank backbones: {error}") from error
    row.update(facts, width=int(features.x.shape[1]), seconds=round(time.perf_counter() - start, 2))
    return row


def _extract(spec, data, store, batch_size, progress):
    _, model = factory.build_feature_model(
        spec["backbone"],
        spec.get("layer") or "last_conv",
        input_shape=spec["input_shape"],
        weights=spec["weights"],
        backbone_kwargs=spec.get("backbone_kwargs"),
    )
    outputs = model.outputs
    # Several taps are one row: their pooled features side by side, as
    # transfer(feature_layer=[...]) concatenates them.
    model = keras.Model(
        model.input, outputs[0] if len(outputs) == 1 else keras.layers.Concatenate()(outputs)
    )
    before = _written(store)
    # overwrite: a store of other data, in a folder of rank's own, is redone.
    features = extract_features(
        model, data, cache=store, batch_size=batch_size, progress=progress, overwrite=True
    )
    facts = {
        "parameters": int(model.count_params()),
        "input_shape": list(model.input_shape[1:]),
        "cached": before is not None and before == _written(store),
    }
    return features, facts


def _identity(spec, data, store):
    """What proves a store holds this candidate's features of this data
    without building the backbone: the spec, the weights file's path,
    size, modification time and inode, and the data's fingerprint (the
    store's own rule). None where nothing short of building proves it: a
    model object, or random weights."""
    weights = spec["weights"]
    if store is None or weights is None or not isinstance(spec["backbone"], str):
        return None
    if not isinstance(data, (str, os.PathLike, tuple)):
        return None  # a stream is known only by reading it: extract_features checks it
    if weights != "imagenet":
        stat = pathlib.Path(weights).stat()
        weights = [str(pathlib.Path(weights).resolve()), stat.st_size, stat.st_mtime_ns]
        weights.append(stat.st_ino)
    shape = spec["input_shape"] or (224, 224, 3)
    source = DataSource(data, 32, shape)
    return {
        "spec": _folder(spec),
        "weights": weights,
        "data": source.fingerprint(hash_data=True),
        "keras": keras.__version__,
    }


def _read_back(store, identity):
    """`(features, facts)` from the store when its record proves it holds
    them, else `(None, None)`."""
    if identity is None or not _record_path(store).is_file() or _written(store) is None:
        return None, None
    saved = json.loads(_record_path(store).read_text())
    if saved.get("identity") != identity or saved.get("written") != _written(store):
        return None, None
    features = Features.load(store)
    return features, {**saved["facts"], "cached": True}


def _remember(store, identity, features, facts):
    if identity is None or store is None:
        return
    record = {
        "identity": identity,
        "written": _written(store),
        "facts": {k: v for k, v in facts.items() if k != "cached"},
    }
    text = json.dumps(record, sort_keys=True).encode()
    atomic_write(_record_path(store), lambda handle: handle.write(text))


def _record_path(store):
    # Beside the store, not in it: a store holds only its own files.
    return store.with_name(store.name + ".json")


def _folder(spec):
    """A store folder per candidate: its name, and a digest of what builds it."""
    described = json.dumps(
        {k: spec.get(k) for k in _SPEC_KEYS}, sort_keys=True, default=_describe
    ).encode()
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in spec["name"])[:60]
    return f"{slug}-{hashlib.sha256(described).hexdigest()[:12]}"


def _describe(value):
    func = getattr(value, "func", None)  # functools.partial
    if func is not None:
        return [_describe(func), list(value.args), value.keywords]
    return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', repr(value))}"


def _cell(value):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def _written(store):
    """When the store's manifest was last written, or None."""
    manifest = None if store is None else store / feature_store.MANIFEST
    return manifest.stat().st_mtime_ns if manifest is not None and manifest.is_file() else None
