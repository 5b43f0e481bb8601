"""Weight transfer between models, `.npz` save/load, and Keras 2 `.h5` import.

Every loader reduces its source to one table, `{layer name: [(variable
name, array), ...]}`, and hands it to the same matcher, which assigns what
fits and reports the rest. Nothing is assigned until every match has been
checked, so a failed import leaves the model as it was.
"""

import dataclasses
import os
import pathlib
import zipfile

import keras
import numpy as np

from keras_transfer.utils import _compat
from keras_transfer.utils._io import atomic_write

__all__ = [
    "TransferReport",
    "load_legacy_h5",
    "load_weights_file",
    "load_weights_npz",
    "save_weights_npz",
    "transfer_weights",
]

_MATCHES = ("auto", "name", "order")


@dataclasses.dataclass
class TransferReport:
    """What a weight transfer did, layer by layer.

    Attributes:
        transferred: `(target layer, source layer, parameter count)` rows.
        skipped: `(layer, reason)` rows: source weights that were not used.
        missing: `(layer, reason)` rows: target layers left as they were.
    """

    transferred: list = dataclasses.field(default_factory=list)
    skipped: list = dataclasses.field(default_factory=list)
    missing: list = dataclasses.field(default_factory=list)

    @property
    def transferred_params(self):
        return sum(count for _, _, count in self.transferred)

    def summary(self):
        lines = [
            f"Transferred {self.transferred_params:,} parameters in "
            f"{len(self.transferred)} layers; skipped {len(self.skipped)} source "
            f"layers; {len(self.missing)} target layers missing."
        ]
        for layer, reason in self.skipped[:10]:
            lines.append(f"  skipped {layer}: {reason}")
        for layer, reason in self.missing[:10]:
            lines.append(f"  missing {layer}: {reason}")
        hidden = max(len(self.skipped) - 10, 0) + max(len(self.missing) - 10, 0)
        if hidden:
            lines.append(f"  ... and {hidden} more")
        return "\n".join(lines)

    def __str__(self):
        return self.summary()


def transfer_weights(source, target, match="auto", skip_mismatch=True, verbose=False):
    """Copies layer parameters from one model into another.

    Example:

    >>> source = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="fc")])
    >>> target = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="fc"),
    ...                            keras.layers.Dense(2, name="new_head")])
    >>> report = keras_transfer.transfer_weights(source, target)
    >>> report.transferred_params, [layer for layer, _ in report.missing]
    (15, ['new_head'])

    Args:
        source: a Keras model (or layer) holding the weights.
        target: the Keras model to initialise.
        match: `"name"` pairs layers by name, `"order"` pairs weighted layers
            in order, `"auto"` uses names when most target layers find one.
        skip_mismatch: if `False`, a shape mismatch raises instead of being
            reported and skipped.
        verbose: print the report's summary.

    Returns:
        A `TransferReport`.
    """
    return _assign(target, _table_of_model(source), match, skip_mismatch, verbose)


def save_weights_npz(model, path, layers=None):
    """Saves layer parameters to one `.npz` file (atomically).

    Keys are `"<layer>/<index>/<variable>"`, so the file reads without Keras.

    Args:
        model: the Keras model.
        path: the `.npz` file to write.
        layers: optional list of layer names (or layers) to save; all
            weighted layers by default.

    Returns:
        The number of parameters written.
    """
    table = _table_of_model(model)
    if layers is not None:
        wanted = [getattr(layer, "name", layer) for layer in layers]
        unknown = [name for name in wanted if name not in table]
        if unknown:
            raise ValueError(
                f"`layers` names layers with no weights in the model. Received: "
                f"{unknown}. Weighted layers: {sorted(table)[:20]}"
            )
        table = {name: table[name] for name in wanted}
    arrays = {
        f"{layer}/{index}/{variable}": value
        for layer, weights in table.items()
        for index, (variable, value) in enumerate(weights)
    }
    atomic_write(path, lambda handle: np.savez(handle, **arrays))
    return int(sum(value.size for value in arrays.values()))


def load_weights_npz(model, path, match="auto", skip_mismatch=True, verbose=False):
    """Initialises a model from a `.npz` written by `save_weights_npz`.

    Returns:
        A `TransferReport`.
    """
    path = _existing_file(path, "path")
    try:
        with np.load(path) as data:
            table = {}
            for key in data.files:
                layer, _, variable = key.rsplit("/", 2)
                table.setdefault(layer, []).append((variable, data[key]))
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(
            f"Could not read weights from {str(path)!r}: not a valid .npz written "
            f"by save_weights_npz ({type(error).__name__}: {error or 'empty file'})."
        ) from error
    return _assign(model, table, match, skip_mismatch, verbose)


def load_legacy_h5(model, path, match="name", skip_mismatch=True, verbose=False):
    """Imports the weights of a Keras 2 `.h5` file into a Keras 3 model.

    It reads whole-model files (`model_weights/...`) and weights-only files,
    walks nested sub-models, and maps legacy variable names such as
    `depthwise_kernel:0` onto Keras 3's.

    Returns:
        A `TransferReport`.

    Raises:
        ValueError: the file is not HDF5 weights, or no layer of it fits
            `model` (another architecture): nothing is assigned.
    """
    report = _load_legacy_h5(model, path, match, skip_mismatch, verbose)
    if not report.transferred:
        raise ValueError(
            f"No weights of {str(path)!r} fit the model {model.name!r} (another "
            f"architecture?), matching by {match!r}: nothing was loaded. " + report.summary()
        )
    return report


def _load_legacy_h5(model, path, match, skip_mismatch, verbose=False):
    import h5py

    path = _existing_file(path, "path")
    try:
        with h5py.File(path, "r") as handle:
            root = handle["model_weights"] if "model_weights" in handle else handle
            table = {}
            _read_h5_group(root, table)
    except OSError as error:
        raise ValueError(
            f"Could not read {str(path)!r} as an HDF5 weights file: {error}"
        ) from error
    if not table:
        raise ValueError(f"{str(path)!r} holds no layer weights (no `weight_names`).")
    return _assign(model, table, match, skip_mismatch, verbose)


def load_weights_file(model, path):
    """Loads any supported weights file into `model`, or raises clearly.

    `.npz` (save_weights_npz), `.weights.h5` and `.keras` (Keras 3), and
    `.h5` (keras.applications files by layer order, else Keras 2 whole-model
    files by layer name) are accepted.

    Returns:
        A `TransferReport`, or `None` where Keras loaded the file itself.
    """
    path = _existing_file(path, "weights")
    name = path.name.lower()
    if name.endswith(".npz"):
        try:
            report = load_weights_npz(model, path, skip_mismatch=False)
        except ValueError as error:
            raise ValueError(
                f"weights={str(path)!r} is incompatible with this backbone: {error}"
            ) from error
    elif name.endswith((".weights.h5", ".keras")):
        try:
            model.load_weights(path)
            return None
        except Exception as error:  # Keras raises many types here
            report = _from_transfer_model(model, path) if name.endswith(".keras") else None
            if report is not None:
                return report
            raise ValueError(
                f"weights={str(path)!r} does not fit this backbone: {error}"
            ) from error
    elif name.endswith((".h5", ".hdf5")):
        report = _load_legacy_h5(model, path, match="name", skip_mismatch=True)
        if report.missing or not report.transferred:
            # keras.applications' own weight files pair layers by order.
            try:
                order = _load_legacy_h5(model, path, match="order", skip_mismatch=False)
            except ValueError:
                order = None
            if order is not None and not order.missing:
                report = order
    else:
        raise ValueError(
            f"Unsupported weights file. Received: weights={str(path)!r}. Allowed: "
            "'imagenet', None, or a path ending in .npz, .weights.h5, .keras or .h5"
        )
    if report is not None and (report.missing or not report.transferred):
        raise ValueError(
            f"weights={str(path)!r} is incompatible with this backbone: " + report.summary()
        )
    return report


def _from_transfer_model(model, path):
    """A whole transfer model's `.keras` (a run's `model.keras`): its part
    named `backbone` into `model`, layer by layer name. `None` when the file
    holds no such part, or it does not fit."""
    try:
        saved = keras.saving.load_model(path, compile=False)
        backbone = saved.get_layer("backbone")
    except Exception:  # noqa: BLE001 - not a loadable transfer model
        return None
    report = transfer_weights(backbone, model, match="name", skip_mismatch=True)
    if report.missing or not report.transferred:
        return None
    return report


def _read_h5_group(group, table):
    import h5py

    names = group.attrs.get("weight_names")
    if names is not None:
        for raw in names:
            weight_name = raw.decode() if isinstance(raw, bytes) else str(raw)
            parts = weight_name.split("/")
            layer = parts[-2] if len(parts) > 1 else group.name.split("/")[-1]
            variable = parts[-1].split(":")[0]
            table.setdefault(layer, []).append((variable, np.asarray(group[weight_name])))
        return
    for key in group:
        if isinstance(group[key], h5py.Group):
            _read_h5_group(group[key], table)


def _weighted_layers(model):
    """Leaf layers that own weights, nested models flattened, in order."""
    layers = []
    for layer in getattr(model, "layers", [model]):
        if hasattr(layer, "layers") and layer.layers:
            layers.extend(_weighted_layers(layer))
        elif layer.weights:
            layers.append(layer)
    if not layers and model.weights and not hasattr(model, "layers"):
        layers.append(model)
    return layers


def _table_of_model(model):
    return {
        layer.name: [(w.name, keras.ops.convert_to_numpy(w)) for w in layer.weights]
        for layer in _weighted_layers(model)
    }


# Keras 2 names that Keras 3 spells differently, per layer type.
_ALIASES = {"depthwise_kernel": "kernel"}


def _match_layer(layer, source):
    """Pairs a layer's variables with source `(name, array)` rows, or explains."""
    targets = layer.weights
    if len(source) != len(targets):
        return None, f"{len(source)} source arrays for {len(targets)} variables"
    by_name = {}
    for variable, value in source:
        by_name.setdefault(variable, value)
        by_name.setdefault(_ALIASES.get(variable, variable), value)
    pairs = []
    names_fit = all(w.name in by_name for w in targets)
    for index, weight in enumerate(targets):
        value = by_name[weight.name] if names_fit else source[index][1]
        if tuple(value.shape) != tuple(weight.shape):
            return None, (
                f"shape mismatch for {weight.name}: source {tuple(value.shape)}, "
                f"target {tuple(weight.shape)}"
            )
        pairs.append((weight, value))
    return pairs, None


def _assign(target, table, match, skip_mismatch, verbose):
    if match not in _MATCHES:
        raise ValueError(f"`match` must be one of {_MATCHES}. Received: match={match!r}")
    layers = _weighted_layers(target)
    if match == "auto":
        found = sum(layer.name in table for layer in layers)
        match = "name" if found >= max(1, len(layers) // 2) else "order"
    report = TransferReport()
    if match == "name":
        pairing = [(layer, layer.name) for layer in layers]
    else:
        source_names = list(table)
        pairing = [
            (layer, source_names[i] if i < len(source_names) else None)
            for i, layer in enumerate(layers)
        ]
    used = set()
    assignments = []
    for layer, source_name in pairing:
        if source_name is None or source_name not in table:
            report.missing.append(
                (
                    layer.name,
                    "no source layer of that name"
                    if match == "name"
                    else "source has fewer layers",
                )
            )
            continue
        pairs, reason = _match_layer(layer, table[source_name])
        used.add(source_name)
        if pairs is None:
            if not skip_mismatch:
                raise ValueError(
                    f"Cannot load source layer {source_name!r} into {layer.name!r}: "
                    f"{reason}. Pass skip_mismatch=True to skip it."
                )
            report.skipped.append((source_name, reason))
            report.missing.append((layer.name, reason))
            continue
        assignments.extend(pairs)
        report.transferred.append(
            (layer.name, source_name, int(sum(value.size for _, value in pairs)))
        )
    for source_name in table:
        if source_name not in used:
            report.skipped.append((source_name, "no target layer matched"))
    for weight, value in assignments:
        weight.assign(value.astype(keras.backend.standardize_dtype(weight.dtype)))
    if verbose:
        _compat.print_msg(report.summary())
    return report


def _existing_file(path, argument):
    path = pathlib.Path(os.fspath(path))
    if not path.is_file():
        raise FileNotFoundError(
            f"No weights file at {str(path)!r}. Received: {argument}={str(path)!r}"
        )
    return path
