"""`transfer()`: one call from a backbone to a correct transfer model.

The steps, in order: resolve the backbone into a Keras model and its family
(one resolver function per source type, tried in turn), cut it at the
feature tap and pool, wrap it in a `BackboneModel` with its blocks, then put
the named parts together: `preprocessing -> augmentation -> backbone ->
head`.
"""

import contextlib
import dataclasses
import difflib
import functools
import os
import pathlib
import socket
import tempfile
import threading

import keras
import numpy as np

from keras_transfer import _compat, freezing, hub, multi_worker, precision, regularizers
from keras_transfer import backbones as registry
from keras_transfer._options import FUSIONS, POOLINGS, PREPROCESSING_MODES, STRATEGIES
from keras_transfer.backbone_model import BackboneModel, check_bn
from keras_transfer.layers import (
    FeatureFusion,
    ImagePreprocessing,
    InfNormalize,
    TokenPooling,
    TransferMatrix,
)
from keras_transfer.weights import load_weights_file

__all__ = ["FUSIONS", "POOLINGS", "STRATEGIES", "build_feature_model", "head_layers", "transfer"]


@dataclasses.dataclass
class Source:
    """A resolved backbone: a functional Keras model and what we know of it."""

    model: keras.Model
    family: registry.Family | registry.KerasHubFamily | None
    preprocessing: object  # an ImagePreprocessing mode, or a KerasHub ImageConverter
    label: str
    tokens: tuple | None = None  # a transformer's (prefix tokens, has a class token)


def transfer(
    backbone,
    num_classes=None,
    *,
    strategy="feature_extraction",
    input_shape=None,
    weights="imagenet",
    preprocessing="auto",
    augmentation=None,
    feature_layer="last_conv",
    pooling="auto",
    transfer_matrix=None,
    inf_normalize=False,
    head=None,
    dropout=0.2,
    unfreeze="all",
    bn="inference",
    classifier_activation=None,
    fusion="concat",
    backbone_kwargs=None,
    regularization=None,
    mixed_precision="auto",
    name=None,
):
    """Rewires a pretrained backbone for fine-tuning or feature extraction.

    The model takes raw RGB pixels in [0, 255] and is made of named parts:
    `preprocessing` (the backbone's own `preprocess_input`, inside the
    model), `augmentation` (when given), `backbone` and `head`. With
    `num_classes=None` it returns the embedding.

    Example:

    >>> model = keras_transfer.transfer(keras.applications.MobileNet, 5,
    ...                                 weights=None, input_shape=(32, 32, 3))
    >>> [layer.name for layer in model.layers]
    ['image', 'preprocessing', 'backbone', 'head']
    >>> tuple(model.output.shape)
    (None, 5)

    Args:
        backbone: a keras.applications constructor, a registered name
            (`"resnet50"`, `"mobilenet_v2"`, `"EfficientNetB0"`), a built
            `keras.Model` (its classifier top is cut), a KerasHub `Backbone`,
            a TF-Hub SavedModel (a directory, a Hub handle, or a
            `ktr.hub.HubLayer`; TensorFlow backend; its preprocessing is
            Hub's [0, 1] scaling and it is one block), or a list of these,
            whose features are fused (`fusion`).
        num_classes: number of classes, or `None` for a feature model.
        strategy: `"feature_extraction"` (the backbone is frozen and runs in
            inference mode) or `"fine_tune"` (it trains from `unfreeze`).
        input_shape: `(height, width, channels)`, channels 1 or 3.
            Defaults to the family's input size.
        weights: `"imagenet"`, `None`, or a path to a weights file (`.h5`,
            a Keras 2 whole-model `.h5`, `.weights.h5`, `.npz`).
        preprocessing: `"auto"` (the family's own), or an
            `ImagePreprocessing` mode: `"caffe"`, `"tf"`, `"torch"`,
            `"unit"`, `"none"`.
        augmentation: a Keras layer, or a list of layers, applied in
            training only.
        feature_layer: `"last_conv"`, a layer or block name, or a list of
            them (multi-scale features, each pooled, then concatenated).
        pooling: `"auto"` (`"avg"`, or a transformer family's read-out:
            `"cls"` for ViT, `"cls+avg"` for DINOv2), `"avg"`, `"max"`,
            `"avgmax"` (both, concatenated), `"flatten"`, `"cls"` (a
            transformer's class token), `"cls+avg"` (the class token and the
            patch tokens' mean), or `None` for the feature map (the token
            sequence). On a transformer, `"avg"`, `"max"` and `"flatten"`
            read the patch tokens only, without class and register tokens.
        transfer_matrix: units of a `TransferMatrix(units, activation="relu",
            use_gate=True)` in the head (the method's `phi(P o (W H))`).
        inf_normalize: add `InfNormalize` after it (the method's `F*`).
        head: `None` (Dropout then Dense), a list of hidden widths (Dense,
            BatchNorm, ReLU, Dropout each), or a Keras layer or model.
        dropout: dropout rate before each Dense of the head.
        unfreeze: with `"fine_tune"`: `"all"`, the top N blocks, or a block
            or layer name to train from.
        bn: BatchNorm policy: `"inference"`, `"train_affine"` or `"train"`.
            A Hub model's BatchNorm is inside its graph: it runs in training
            mode (and its dropout with it) only under `"train"`. A
            transformer's LayerNorm has no running statistics and trains
            with its block: for a transformer without BatchNorm, anything
            but `"inference"` is an error.
        classifier_activation: activation of the last Dense; `None` gives
            logits (compile with `from_logits=True`).
        fusion: a `FeatureFusion` mode for a list of backbones.
        backbone_kwargs: extra arguments for a constructor (`alpha=0.35`),
            or for the `HubLayer` of a handle (`output_key="features"`).
        regularization: `"l2sp"` or a `ktr.regularizers.L2SP`: fine-tuning
            pulls the backbone toward its pretrained weights, not toward 0.
        mixed_precision: `"auto"` (bfloat16 on TPUs and Ampere or newer
            GPUs, float16 with loss scaling on older GPUs, float32 on CPU; a
            global policy the program set wins), a policy name
            (`"float32"`, `"mixed_bfloat16"`, `"mixed_float16"`), or `None`
            (the global policy). The preprocessing, the classifier's logits
            and so the loss stay float32. See `ktr.precision`.
        name: the model's name.

    Returns:
        A functional `keras.Model`.
    """
    if isinstance(num_classes, np.integer):
        num_classes = int(num_classes)
    _check_arguments(num_classes, strategy, pooling, bn, dropout, fusion, head)
    if not isinstance(preprocessing, keras.layers.Layer) and preprocessing not in (
        "auto",
        *PREPROCESSING_MODES,
    ):
        raise ValueError(
            f"`preprocessing` must be 'auto', one of {PREPROCESSING_MODES} or a Keras layer. "
            f"Received: preprocessing={preprocessing!r}"
        )
    regularization = regularizers.get(regularization)
    sources = backbone if isinstance(backbone, (list, tuple)) else [backbone]
    if not sources:
        raise ValueError("`backbone` is an empty list. Received: backbone=[]")
    shape = _check_input_shape(input_shape)
    multi_worker.patch_if_needed()
    # The policy goes on each layer (KerasHub's way); the global one is never
    # changed.
    policy = precision.resolve(mixed_precision)
    model = _assemble(
        sources,
        shape,
        weights,
        dict(backbone_kwargs or {}),
        preprocessing,
        augmentation,
        feature_layer,
        pooling,
        bn,
        fusion,
        policy,
        name,
        build_head(
            num_classes,
            head,
            transfer_matrix,
            inf_normalize,
            dropout,
            classifier_activation,
            pooling,
            policy,
        ),
    )
    freezing.check_bn_applies(model, bn)
    if strategy == "feature_extraction":
        freezing.freeze(model)
    else:
        freezing.unfreeze(model, blocks=unfreeze, bn=bn)
    if regularization is not None:
        regularization.attach(model)
    return model


def _assemble(
    sources,
    shape,
    weights,
    kwargs,
    preprocessing,
    augmentation,
    feature_layer,
    pooling,
    bn,
    fusion,
    policy,
    name,
    head,
):
    resolved = [resolve(source, shape, weights, kwargs) for source in sources]
    for source in resolved:
        precision.apply(source.model, policy)
    if shape is None:
        shape = tuple(resolved[0].model.input_shape[1:3]) + (3,)
    inputs = keras.Input(shape, name="image")
    features = []
    for index, source in enumerate(resolved):
        suffix = "" if len(resolved) == 1 else f"_{index}"
        x = _preprocessing_layer(source, preprocessing, f"preprocessing{suffix}")(inputs)
        if augmentation is not None:
            x = _augmentation(augmentation, suffix)(x)
        net = build_backbone(
            source, feature_layer, pooling, bn, name=f"backbone{suffix}", dtype=policy
        )
        features.append(net(x))
    if len(features) > 1:
        x = FeatureFusion(fusion, name="fusion", dtype=policy)(features)
    else:
        x = features[0]
    if head:
        x = keras.Sequential(head, name="head")(x)
    model = keras.Model(inputs, x, name=name or f"transfer_{resolved[0].label.lower()}")
    # compile() reads the model's own policy: mixed_float16 gets loss scaling.
    model.dtype_policy = policy
    return model


def build_feature_model(
    backbone,
    layers="last_conv",
    pooling="auto",
    input_shape=None,
    weights="imagenet",
    mixed_precision="auto",
):
    """A frozen feature model with one pooled output per tap in `layers`, and
    its label: what `extract_features` runs.

    Example:

    >>> label, model = keras_transfer.factory.build_feature_model(
    ...     "mobilenet", ["conv_pw_5_relu", "last_conv"], weights=None,
    ...     input_shape=(32, 32, 3))
    >>> label, [tuple(output.shape) for output in model.outputs]
    ('mobilenet', [(None, 256), (None, 1024)])

    Args:
        backbone: anything `transfer()` takes, but a list.
        layers: a tap or a list of taps (see `transfer(feature_layer=...)`).
        pooling, input_shape, weights, mixed_precision: as for `transfer()`.
    """
    multi_worker.patch_if_needed()
    policy = precision.resolve(mixed_precision)
    taps = list(layers) if isinstance(layers, (list, tuple)) else [layers or "last_conv"]
    source = resolve(backbone, _check_input_shape(input_shape), weights)
    precision.apply(source.model, policy)
    shape = input_shape or tuple(source.model.input_shape[1:3]) + (3,)
    inputs = keras.Input(shape, name="image")
    x = _preprocessing_layer(source, "auto", "preprocessing")(inputs)
    net = build_backbone(source, taps, pooling, separate=True, dtype=policy)
    freezing.freeze(net)
    model = keras.Model(inputs, net(x))
    model.dtype_policy = policy
    return source.label.lower(), model


# --- Resolution: one function per source type --------------------------------


def _from_hub(backbone, input_shape, weights, kwargs):
    if isinstance(backbone, hub.HubLayer):
        if kwargs:
            raise ValueError(
                "`backbone_kwargs` configure a HubLayer built from a handle; this "
                f"HubLayer is built already. Received: backbone_kwargs={kwargs!r}"
            )
        layer = backbone
    elif hub.is_handle(backbone):
        # A SavedModel computes in its own dtype, float32 for TF-Hub's models.
        layer = hub.HubLayer(backbone, **{"name": "hub", "dtype": "float32", **kwargs})
    else:
        return None
    if weights is None:
        raise ValueError(
            "A SavedModel brings its own weights; it cannot start from random "
            "ones. Use weights='imagenet' (the SavedModel's own) or a weights "
            "file. Received: weights=None"
        )
    size = layer.image_shape
    if input_shape is not None:
        shape = tuple(input_shape[:2]) + (3,)
    elif size is not None and None not in size:
        shape = size
    else:
        raise ValueError(
            f"The SavedModel at {layer.handle!r} takes images of any size "
            f"({size}): pass `input_shape`, e.g. input_shape=(224, 224, 3). "
            "Received: input_shape=None"
        )
    inputs = keras.Input(shape, name=f"{layer.name}_input")
    outputs = layer(inputs)
    if isinstance(outputs, dict):
        raise ValueError(
            f"The SavedModel at {layer.handle!r} returns a dict of outputs, "
            f"{sorted(outputs)}: choose the features with "
            "backbone_kwargs={'output_key': ...}. Received: output_key=None"
        )
    model = keras.Model(inputs, outputs, name=layer.name)
    if weights != "imagenet":
        load_weights_file(model, weights)
    # TF-Hub's image convention: float pixels in [0, 1].
    return Source(model, None, "unit", layer.name)


def _from_name(backbone, input_shape, weights, kwargs):
    if not isinstance(backbone, str):
        return None
    return _from_constructor(
        registry.constructor(registry.resolve_name(backbone)), input_shape, weights, kwargs
    )


def _from_constructor(backbone, input_shape, weights, kwargs):
    if isinstance(backbone, keras.layers.Layer) or not callable(backbone):
        return None
    function = backbone
    while isinstance(function, functools.partial):
        function = function.func
    label = getattr(function, "__name__", type(function).__name__)
    family = registry.family_of_constructor(label)
    if input_shape is None:
        size = family.models[label].size if family else 224
        build_shape = (size, size, 3)
    else:
        build_shape = tuple(input_shape[:2]) + (3,)
        sides = [s for s in build_shape[:2] if s is not None]  # None: any size
        if family and sides and min(sides) < family.min_size:
            raise ValueError(
                f"{label} needs inputs of at least {family.min_size}x{family.min_size} "
                f"pixels. Received: input_shape={tuple(input_shape)}"
            )
    from_file = weights not in ("imagenet", None)
    try:
        with network_errors(
            f"{label}'s {weights} weights",
            "pass a local weights file (weights='path/to/file.h5' or .weights.h5; the "
            "command line's --weights PATH) or weights=None",
        ):
            model = backbone(
                include_top=False,
                weights=None if from_file else weights,
                input_shape=build_shape,
                **kwargs,
            )
    except (TypeError, ValueError) as error:
        if not kwargs:
            raise
        # A misspelt or mistyped constructor argument fails deep inside Keras.
        raise ValueError(
            f"{label} refused `backbone_kwargs` ({type(error).__name__}: {error}). "
            f"Received: backbone_kwargs={kwargs!r}"
        ) from error
    if from_file:
        load_weights_file(model, weights)
    return Source(model, family, _preprocessing_mode(family), label)


def _from_keras_model(backbone, input_shape, weights, kwargs):
    if not isinstance(backbone, keras.Model):
        return None
    if isinstance(backbone, keras.Sequential) and backbone.built:
        # A Sequential wraps a functional graph; cut and tap that.
        backbone = keras.Model(backbone.inputs, backbone.outputs, name=backbone.name)
    if not _compat.is_functional(backbone):
        raise TypeError(
            "`backbone` must be a functional or Sequential keras.Model (its layers "
            f"are cut at the feature tap). Received: a subclassed model "
            f"{type(backbone).__name__}"
        )
    if weights not in ("imagenet", None):
        load_weights_file(backbone, weights)
    family = registry.family_of_model(backbone)
    if input_shape is not None:
        expected = tuple(backbone.input_shape[1:3])
        if any(e is not None and e != s for e, s in zip(expected, input_shape[:2])):
            raise ValueError(
                f"`input_shape` does not fit the model, which takes {expected} "
                f"images. Received: input_shape={tuple(input_shape)}"
            )
    label = family.name if family else backbone.name
    return Source(backbone, family, _preprocessing_mode(family), label)


def _from_keras_hub(backbone, input_shape, weights, kwargs):
    converter = None
    if is_preset(backbone):
        backbone, converter = load_preset(str(backbone), weights)  # its vision tower
    elif not type(backbone).__module__.startswith("keras_hub"):
        return None
    else:
        if weights not in ("imagenet", None):
            load_weights_file(backbone, weights)
        backbone = vision_tower(backbone)
    family = registry.keras_hub_family(backbone)
    if family is None:  # an unregistered family: its graph as it is
        model = keras.Model(backbone.inputs, backbone.outputs, name=backbone.name)
        return Source(model, None, "none", backbone.name)
    backbone = resized(backbone, family, input_shape)
    if converter is not None and input_shape is not None:
        converter.image_size = tuple(input_shape[:2])
    config = backbone.get_config()
    tokens = None
    if family.kind == "transformer":
        has_class = family.class_token
        if isinstance(has_class, str):
            has_class = bool(config.get(has_class, True))
        registers = int(config.get(family.register_tokens, 0)) if family.register_tokens else 0
        tokens = (int(has_class) + registers, has_class)
    model = unrolled_graph(backbone, family, tokens[0] if tokens else 0)
    return Source(model, family, converter or family.preprocessing, family.name, tokens)


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
PROBE_SECONDS = 3


def reachable(host):
    """Whether a TCP connection to `host`:443 opens within `PROBE_SECONDS`
    (name lookup included, in a thread: it has no timeout of its own)."""
    result = []

    def probe():
        try:
            socket.create_connection((host, 443), timeout=PROBE_SECONDS).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(PROBE_SECONDS)
    return bool(result and result[0])


@contextlib.contextmanager
def network_errors(what, instead):
    """A failed download, whatever the client raised (Keras's get_file: a
    bare Exception; requests: its ConnectionError), as a ConnectionError
    that says what could not be downloaded and how to do without it."""
    try:
        yield
    except Exception as error:
        names = {cls.__name__ for cls in type(error).__mro__}
        if not (
            str(error).startswith("URL fetch failure")
            or names & {"URLError", "ConnectionError", "Timeout", "TimeoutError"}
        ):
            raise
        raise ConnectionError(
            f"Could not download {what}: offline? ({type(error).__name__}: {error}). To work "
            f"offline, {instead}."
        ) from error


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


def resample_position_table(table, grid, new_grid):
    """A position table's grid rows resized bicubically, as timm's
    `resample_abs_pos_embed` does (torch's bicubic, align_corners=False);
    its prefix rows (a class token's) as they are. In NumPy: the backends'
    own bicubic kernels differ."""
    prefix = table.shape[0] - grid[0] * grid[1]
    rows = np.reshape(table[prefix:], (*grid, table.shape[-1])).astype("float64")
    along_h, along_w = (bicubic_matrix(n, m) for n, m in zip(grid, new_grid))
    rows = np.einsum("ih,hwc,jw->ijc", along_h, rows, along_w)
    return np.concatenate([table[:prefix], rows.reshape(-1, table.shape[-1])]).astype(table.dtype)


def bicubic_matrix(size, new_size, a=-0.75):
    """(new_size, size): torch's bicubic weights (Keys, a=-0.75), with the
    edge rows repeated beyond the border."""
    x = (np.arange(new_size) + 0.5) * size / new_size - 0.5
    base = np.floor(x)
    matrix = np.zeros((new_size, size))
    for k in (-1, 0, 1, 2):
        d = np.abs(x - base - k)
        near = ((a + 2) * d - (a + 3)) * d * d + 1
        far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
        weight = np.where(d <= 1, near, np.where(d < 2, far, 0.0))
        np.add.at(matrix, (np.arange(new_size), np.clip(base + k, 0, size - 1).astype(int)), weight)
    return matrix


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


def _preprocessing_layer(source, preprocessing, name):
    """The model's `preprocessing` part: the preset's ImageConverter, or an
    `ImagePreprocessing` in float32 (mean subtraction in bfloat16 would round
    pixels to whole numbers)."""
    mode = source.preprocessing if preprocessing == "auto" else preprocessing
    if isinstance(mode, keras.layers.Layer):
        return keras.Sequential([mode], name=name)
    return ImagePreprocessing(mode, dtype="float32", name=name)


def _preprocessing_mode(family):
    # Built-in preprocessing lives in the backbone: never apply it twice.
    if family is None or family.preprocessing == "builtin":
        return "none"
    return family.preprocessing


# Tried in turn; the first that returns a Source wins. A new source type is a
# new function in this list.
_RESOLVERS = [_from_keras_hub, _from_hub, _from_keras_model, _from_name, _from_constructor]


def resolve(backbone, input_shape=None, weights="imagenet", kwargs=None):
    """Resolves any supported backbone into a `Source`."""
    for resolver in _RESOLVERS:
        source = resolver(backbone, input_shape, weights, kwargs or {})
        if source is not None:
            return source
    raise TypeError(
        "`backbone` must be a keras.applications constructor, a registered name, a "
        "keras.Model, a KerasHub Backbone, a SavedModel directory or TF-Hub handle, "
        "a ktr.hub.HubLayer, or a list of these. Received: "
        f"backbone={backbone!r} of type {type(backbone).__name__}"
    )


# --- The backbone part ----------------------------------------------------------


def build_backbone(
    source,
    feature_layer="last_conv",
    pooling="avg",
    bn="inference",
    name="backbone",
    separate=False,
    dtype=None,
):
    """Cuts `source.model` at its feature tap(s), pools, and wraps the result.

    Several taps are concatenated, or, with `separate=True`, kept as outputs.
    """
    model = source.model
    rules = source.family.blocks if source.family else None
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    # A transformer's features are its last layer's tokens.
    last_conv = layers[-1] if source.tokens else _last_feature_layer(model)
    kept = layers[: layers.index(last_conv) + 1]
    blocks = registry.split_blocks(kept, rules) if rules else _generic_blocks(kept)
    taps = feature_layer if isinstance(feature_layer, (list, tuple)) else [feature_layer]
    outputs = [tap_output(model, kept, blocks, tap, last_conv) for tap in taps]
    if pooling is None and len(outputs) > 1:
        raise ValueError(
            "Several feature layers need a pooling to be concatenated. Received: "
            f"feature_layer={feature_layer!r}, pooling=None"
        )
    if pooling == "auto":
        pooling = source.family.pooling if source.tokens else "avg"
    if pooling in ("cls", "cls+avg") and not (source.tokens and source.tokens[1]):
        what = "has no class token" if source.tokens else "gives a feature map"
        raise ValueError(
            f"pooling={pooling!r} reads a transformer's class token, and {source.label} "
            f"{what}. Use 'avg', 'max', 'avgmax' or 'flatten'. Received: pooling={pooling!r}"
        )
    pooled = [
        pool(x, pooling, f"{name}_pool_{i}", dtype, source.tokens) for i, x in enumerate(outputs)
    ]
    if separate or len(pooled) == 1:
        output = pooled if separate else pooled[0]
    else:
        output = keras.layers.Concatenate(name=f"{name}_multiscale", dtype=dtype)(pooled)
    net = BackboneModel(model.inputs, output, bn=bn, name=name)
    if dtype is not None:
        net.dtype_policy = dtype
    # A tap below the top leaves the blocks above it out of the graph.
    present = {layer.name for layer in net.layers}
    net.blocks = [
        [block, [n for n in names if n in present]]
        for block, names in blocks
        if any(n in present for n in names)
    ]
    return net


def _last_feature_layer(model):
    """The last layer with a spatial (rank-4) output: where a top is cut.

    A Hub model is one opaque layer: its output is the feature.
    """
    for layer in reversed(model.layers):
        if isinstance(layer, hub.HubLayer):
            return layer
        shape = getattr(layer, "output", None)
        if shape is not None and len(layer.output.shape) == 4:
            return layer
    raise ValueError(
        f"Cannot find a convolutional feature layer (rank-4 output) in model "
        f"{model.name!r}: its layers end in vectors from the start. Received: "
        f"a model with output shape {model.output_shape}"
    )


def tap_output(model, kept, blocks, tap, last_conv):
    if tap == "last_conv":
        return _compat.output_in_graph(model, last_conv)
    if not isinstance(tap, str):
        raise TypeError(
            f"`feature_layer` must be a string or a list of strings. "
            f"Received: feature_layer={tap!r}"
        )
    for block, names in blocks:
        if block == tap:
            return _compat.output_in_graph(model, model.get_layer(names[-1]))
    names = [layer.name for layer in kept]
    if tap in names:
        return _compat.output_in_graph(model, model.get_layer(tap))
    close = difflib.get_close_matches(tap, names + [b for b, _ in blocks], n=5)
    raise ValueError(
        f"No layer or block named {tap!r} in the backbone. Received: "
        f"feature_layer={tap!r}. Close names: {close}. Blocks: "
        f"{[b for b, _ in blocks]}; or 'last_conv'."
    )


def pool(x, pooling, name, dtype=None, tokens=None):
    if tokens and len(x.shape) == 3 and pooling is not None:
        prefix, has_class = tokens
        return TokenPooling(pooling, prefix, has_class, name=name, dtype=dtype)(x)
    if len(x.shape) != 4 or pooling is None:
        return x
    if pooling == "avg":
        return keras.layers.GlobalAveragePooling2D(name=name, dtype=dtype)(x)
    if pooling == "max":
        return keras.layers.GlobalMaxPooling2D(name=name, dtype=dtype)(x)
    if pooling == "flatten":
        return keras.layers.Flatten(name=name, dtype=dtype)(x)
    return keras.layers.Concatenate(name=name, dtype=dtype)(
        [
            keras.layers.GlobalAveragePooling2D(name=f"{name}_avg", dtype=dtype)(x),
            keras.layers.GlobalMaxPooling2D(name=f"{name}_max", dtype=dtype)(x),
        ]
    )


def _generic_blocks(layers):
    """Blocks for an unregistered model: one per conv or dense layer, with the
    normalisation and activation layers that follow it."""
    blocks, current, has_kernel = [], [], False
    for layer in layers:
        starts = bool(layer.weights) and not isinstance(layer, _NORMALIZATION)
        if starts and has_kernel:
            blocks.append(current)
            current, has_kernel = [], False
        current.append(layer)
        has_kernel = has_kernel or starts
    blocks.append(current)
    return [
        (
            next(
                (l.name for l in block if l.weights and not isinstance(l, _NORMALIZATION)),
                block[0].name,
            ),
            [l.name for l in block],
        )
        for block in blocks
    ]


_NORMALIZATION = (
    keras.layers.BatchNormalization,
    keras.layers.LayerNormalization,
    keras.layers.GroupNormalization,
)


# --- Head, augmentation, arguments -------------------------------------------------


def build_head(
    num_classes, head, transfer_matrix, inf_normalize, dropout, activation, pooling, policy
):
    layers = []
    if transfer_matrix is not None:
        layers.append(
            TransferMatrix(
                transfer_matrix,
                activation="relu",
                use_gate=True,
                name="transfer_matrix",
                dtype=policy,
            )
        )
    if inf_normalize:
        layers.append(InfNormalize(name="inf_normalize", dtype=policy))
    if isinstance(head, keras.layers.Layer):
        return layers + [head]
    if num_classes is None:
        return layers
    if pooling is None and not layers:
        raise ValueError(
            "A classifier head needs pooled features. Received: pooling=None with "
            f"num_classes={num_classes}. Use pooling='avg' (or another), or pass "
            "your own `head` layer."
        )
    return layers + head_layers(num_classes, head, dropout, activation, dtype=policy)


def head_layers(num_classes, hidden=None, dropout=0.0, activation=None, dtype=None):
    """The classifier head's layers, the one builder for `transfer()` and
    `ktr.heads.fit_head`: per hidden width `Dense -> BatchNormalization ->
    ReLU -> Dropout`, then `Dropout` and the `classifier` Dense.

    Example:

    >>> [layer.name for layer in keras_transfer.factory.head_layers(3, [8], 0.2)]
    ['hidden_0', 'hidden_0_bn', 'hidden_0_relu', 'hidden_0_dropout', 'dropout', 'classifier']

    Args:
        num_classes: the classifier's width.
        hidden: widths of hidden layers, or `None`.
        dropout: dropout rate before each Dense after the first.
        activation: the classifier's activation (`None`: logits).
        dtype: the dtype policy of every layer but the classifier, whose
            logits stay float32 under mixed precision.
    """
    layers = []
    for index, width in enumerate(hidden or []):
        layers += [
            keras.layers.Dense(width, use_bias=False, name=f"hidden_{index}", dtype=dtype),
            keras.layers.BatchNormalization(name=f"hidden_{index}_bn", dtype=dtype),
            keras.layers.ReLU(name=f"hidden_{index}_relu", dtype=dtype),
            keras.layers.Dropout(dropout, name=f"hidden_{index}_dropout", dtype=dtype),
        ]
    if dropout:
        layers.append(keras.layers.Dropout(dropout, name="dropout", dtype=dtype))
    layers.append(
        keras.layers.Dense(num_classes, activation=activation, dtype="float32", name="classifier")
    )
    return layers


def _augmentation(augmentation, suffix):
    if isinstance(augmentation, (list, tuple)):
        return keras.Sequential(list(augmentation), name=f"augmentation{suffix}")
    if isinstance(augmentation, keras.layers.Layer):
        return keras.Sequential([augmentation], name=f"augmentation{suffix}")
    raise TypeError(
        "`augmentation` must be a Keras layer or a list of layers. Received: "
        f"augmentation={augmentation!r}"
    )


def _check_arguments(num_classes, strategy, pooling, bn, dropout, fusion, head):
    if num_classes is not None and (
        isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1
    ):
        raise ValueError(
            f"`num_classes` must be a positive integer, or None for a feature model. "
            f"Received: num_classes={num_classes!r}"
        )
    if strategy not in STRATEGIES:
        close = difflib.get_close_matches(str(strategy), STRATEGIES, n=1)
        raise ValueError(
            f"`strategy` must be one of {STRATEGIES}. Received: strategy={strategy!r}"
            + (f". Did you mean {close[0]!r}?" if close else "")
        )
    if pooling not in POOLINGS:
        raise ValueError(f"`pooling` must be one of {POOLINGS}. Received: pooling={pooling!r}")
    check_bn(bn)
    if not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"`dropout` must be in [0, 1). Received: dropout={dropout!r}")
    if fusion not in FUSIONS:
        raise ValueError(f"`fusion` must be one of {FUSIONS}. Received: fusion={fusion!r}")
    if head is not None and not isinstance(head, (list, tuple, keras.layers.Layer)):
        raise TypeError(
            "`head` must be None, a list of hidden widths, or a Keras layer. "
            f"Received: head={head!r}"
        )


def _check_input_shape(input_shape):
    if input_shape is None:
        return None
    shape = tuple(input_shape)
    if (
        len(shape) != 3
        or shape[-1] not in (1, 3)
        or not all(
            side is None
            or (isinstance(side, (int, np.integer)) and not isinstance(side, bool) and side > 0)
            for side in shape[:2]
        )
    ):
        raise ValueError(
            "`input_shape` must be (height, width, channels): positive sizes (or None "
            "for a model that takes any size) and 1 (grayscale) or 3 (RGB) channels. "
            f"Received: input_shape={input_shape!r}"
        )
    return tuple(None if side is None else int(side) for side in shape)
