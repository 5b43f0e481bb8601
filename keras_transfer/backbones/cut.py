"""Cutting a resolved backbone at its feature tap(s) and pooling: the
`BackboneModel` that `transfer()` puts in its model, with its blocks."""

import difflib

import keras

from keras_transfer.backbones import hub, registry
from keras_transfer.backbones.backbone_model import BackboneModel
from keras_transfer.layers import TokenPooling
from keras_transfer.utils import _compat

__all__ = ["build_backbone", "pool", "tap_output"]


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
