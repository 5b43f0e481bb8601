"""Backbone resolution: anything `transfer()` takes, made into a functional
Keras model and what is known of it (a `Source`). One resolver function per
source type, tried in turn."""

import dataclasses
import functools

import keras

from keras_transfer.backbones import hub, registry
from keras_transfer.backbones.keras_hub_adapter import (
    is_preset,
    load_preset,
    resized,
    unrolled_graph,
    vision_tower,
)
from keras_transfer.backbones.weights import load_weights_file
from keras_transfer.utils import _compat
from keras_transfer.utils._network import network_errors

__all__ = ["Source", "resolve"]


@dataclasses.dataclass
class Source:
    """A resolved backbone: a functional Keras model and what we know of it."""

    model: keras.Model
    family: registry.Family | registry.KerasHubFamily | None
    preprocessing: object  # an ImagePreprocessing mode, or a KerasHub ImageConverter
    label: str
    tokens: tuple | None = None  # a transformer's (prefix tokens, has a class token)


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
