"""The KerasHub adapter: loading a preset offline or online, a two-tower
model's vision tower, a backbone rebuilt at another image size, and a
transformer's encoder written out layer by layer, so that blocks can be
tapped and unfrozen one by one."""

import difflib
import os
import pathlib
import tempfile

import keras

from keras_transfer.backbones import registry
from keras_transfer.layers.position_table import resample_position_table
from keras_transfer.utils._network import PROBE_SECONDS, network_errors, reachable

__all__ = [
    "PRESET_HOSTS",
    "PRESET_PREFIXES",
    "import_keras_hub",
    "is_preset",
    "load_preset",
    "resized",
    "unrolled_graph",
    "vision_tower",
]


# A KerasHub preset: a handle with one of these prefixes, or a local directory
# written by `save_to_preset` (its config.json and metadata.json).
PRESET_PREFIXES = ("keras_hub:", "kaggle://", "hf://", "modelscope://")


def is_preset(backbone):
    if not isinstance(backbone, (str, pathlib.Path)):
        return False
    if str(backbone).startswith(PRESET_PREFIXES):
        return True
    path = pathlib.Path(backbone)
    return (path / "config.json").is_file() and (path / "metadata.json").is_file()


def import_keras_hub(handle):
    try:
        import keras_hub  # noqa: PLC0415 -- optional, and it loads TensorFlow
    except ImportError as error:
        raise ImportError(
            "A KerasHub preset needs the keras-hub extra: pip install "
            "'keras-transfer[keras-hub]' (Python 3.11 or newer). Received: "
            f"backbone={handle!r}"
        ) from error
    return keras_hub


def load_preset(handle, weights):
    """The preset's Backbone and its ImageConverter (or `None`)."""
    preset = handle.removeprefix("keras_hub:")
    if weights not in ("imagenet", None):
        raise ValueError(
            "A KerasHub preset brings its own weights: use weights='imagenet' (the "
            "preset's) or None (random). Received: weights=" + repr(weights)
        )
    local = (
        "download it where there is a network, save it with save_to_preset(DIR), and pass "
        "that directory"
    )
    host = PRESET_HOSTS.get(preset.split("://")[0])
    if host and not reachable(host):
        raise ConnectionError(
            f"Could not reach {host} within {PROBE_SECONDS} s to download the KerasHub preset "
            f"{preset!r}: offline? {local[0].upper()}{local[1:]}. Received: backbone={handle!r}"
        )
    keras_hub = import_keras_hub(handle)
    try:
        with network_errors(f"the KerasHub preset {preset!r}", local):
            backbone = keras_hub.models.Backbone.from_preset(
                preset, load_weights=weights is not None
            )
    except (ValueError, FileNotFoundError) as error:
        known = sorted(keras_hub.models.Backbone.presets)
        close = difflib.get_close_matches(preset, known, n=5)
        raise ValueError(
            f"Cannot load the KerasHub preset {preset!r} ({type(error).__name__}: {error}). "
            f"Received: backbone={handle!r}. Close preset names: {close}"
        ) from error
    backbone = vision_tower(backbone)
    shape = [tuple(i.shape) for i in backbone.inputs]
    if len(shape) != 1 or len(shape[0]) != 4:
        raise ValueError(
            f"The KerasHub preset {preset!r} is a {type(backbone).__name__}, not an image "
            f"backbone: its inputs are {shape}. Received: backbone={handle!r}"
        )
    try:
        converter = keras_hub.layers.ImageConverter.from_preset(preset)
    except (ValueError, FileNotFoundError):
        converter = None  # the family's preprocessing instead
    return backbone, converter


# Remote presets whose host is probed first: offline, their clients retry
# for tens of seconds before they fail.
PRESET_HOSTS = {"hf": "huggingface.co", "kaggle": "www.kaggle.com"}


def vision_tower(backbone):
    """A two-tower model's (CLIP, SigLIP) vision tower; any other as it is."""
    family = registry.keras_hub_family(backbone)
    return getattr(backbone, family.tower) if family and family.tower else backbone


def resized(backbone, family, input_shape):
    """The backbone at `input_shape`'s size: itself, or rebuilt with its
    weights (see `KerasHubFamily.position_table`)."""
    current = tuple(backbone.inputs[0].shape[1:3])
    if input_shape is None or None in current or tuple(input_shape[:2]) == current:
        return backbone
    size = tuple(input_shape[:2])
    config = backbone.get_config()
    patch = config.get(family.patch_size) if family.patch_size else None
    if patch is not None:
        patch = tuple(patch) if isinstance(patch, (list, tuple)) else (patch, patch)
        if any(s is None or s % p for s, p in zip(size, patch)):
            raise ValueError(
                f"{type(backbone).__name__} cuts images into {patch[0]}x{patch[1]} patches: "
                f"the image size must be a multiple of that. Received: input_shape={input_shape}"
            )
    rebuilt = type(backbone).from_config({**config, "image_shape": size + (3,)})
    if family.position_table:
        grids = [[s // p for s, p in zip(sides, patch)] for sides in (current, size)]
        for old, new in zip(backbone.weights, rebuilt.weights):
            value = keras.ops.convert_to_numpy(old)
            if old.path.endswith(family.position_table):
                value = resample_position_table(value, *grids)
            elif value.shape != tuple(new.shape) and "int" in str(new.dtype):
                continue  # position ids: the rebuilt layer's own count
            new.assign(value)
        return rebuilt
    # Through a weights file, as `from_preset(image_shape=...)` loads them:
    # each layer's `load_own_variables` adapts what depends on the size.
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "backbone.weights.h5")
        backbone.save_weights(path)
        rebuilt.load_weights(path)
    return rebuilt


def unrolled_graph(backbone, family, prefix_tokens=0):
    """The backbone's graph with a transformer's layers at the top: the
    encoder layer's `call` (before, each layer, after) written out."""
    if not family.unroll:  # a CNN, or a transformer with its layers at the top
        return keras.Model(backbone.inputs[0], backbone.outputs[0], name=backbone.name)
    encoder, before, layers, after = family.unroll

    # A backbone built with a name (as `from_preset` does) prefixes its own
    # layers' names with it.
    def named(layer, name):
        return name is not None and (layer.name == name or layer.name.endswith("_" + name))

    parts, blocks, rope = [], [], None
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if named(layer, family.rope):
            rope = layer
            continue
        if not named(layer, encoder):
            parts.append(layer)
            continue
        parts += [getattr(layer, name) for name in before]
        blocks = list(getattr(layer, layers))
        parts += blocks
        parts += [getattr(layer, name) for name in after]
    inputs = keras.Input(tuple(backbone.inputs[0].shape[1:]), name="images")
    side = {}
    if rope is not None:
        side = {"position_embeddings": rope(inputs), "num_prefix_tokens": prefix_tokens}
    x = inputs
    for part in parts:
        x = part(x, **side) if part in blocks else part(x)
    return keras.Model(inputs, x, name=backbone.name)
