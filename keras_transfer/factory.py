"""`transfer()`: one call from a backbone to a correct transfer model.

The steps, in order, each in its own module: resolve the backbone into a
Keras model and its family (`backbones.resolution`, with KerasHub's in
`backbones.keras_hub_adapter`), cut it at the feature tap and pool into a
`BackboneModel` with its blocks (`backbones.cut`), build the head
(`heads.classifier_head`), then, here, put the named parts together:
`preprocessing -> augmentation -> backbone -> head`.
"""

import warnings

import keras
import numpy as np

from keras_transfer import strategies
from keras_transfer.backbones.cut import build_backbone
from keras_transfer.backbones.resolution import resolve
from keras_transfer.heads import classifier_head
from keras_transfer.heads.classifier_head import build_head
from keras_transfer.layers import FeatureFusion, ImagePreprocessing
from keras_transfer.rates import freezing, precision, regularizers
from keras_transfer.utils import multi_worker
from keras_transfer.utils._options import FUSIONS, POOLINGS, PREPROCESSING_MODES, check_bn

__all__ = ["FUSIONS", "POOLINGS", "build_feature_model", "transfer"]


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
        strategy: a name in `ktr.strategies.NAMES`: what its recipe starts
            from. `"fine_tune"`: the backbone trains from `unfreeze`; the
            others (`"feature_extraction"`, `"auto"`, `"gradual"`): it is
            frozen and runs in inference mode.
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
    head_parts = build_head(
        num_classes,
        head,
        transfer_matrix,
        inf_normalize,
        dropout,
        classifier_activation,
        pooling,
        policy,
    )
    model = _assemble(
        sources,
        shape=shape,
        weights=weights,
        backbone_kwargs=dict(backbone_kwargs or {}),
        preprocessing=preprocessing,
        augmentation=augmentation,
        feature_layer=feature_layer,
        pooling=pooling,
        bn=bn,
        fusion=fusion,
        policy=policy,
        name=name,
        head=head_parts,
    )
    freezing.check_bn_applies(model, bn)
    if strategies.get(strategy).trains_backbone:
        freezing.unfreeze(model, blocks=unfreeze, bn=bn)
    else:
        freezing.freeze(model)
    if regularization is not None:
        regularization.attach(model)
    return model


def _assemble(
    sources,
    *,
    shape,
    weights,
    backbone_kwargs,
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
    """The functional model `image -> preprocessing -> [augmentation] ->
    backbone(s) -> [fusion] -> [head]`, under the dtype policy `policy`."""
    resolved = [resolve(source, shape, weights, backbone_kwargs) for source in sources]
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
    backbone_kwargs=None,
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
        pooling, input_shape, weights, mixed_precision, backbone_kwargs: as
            for `transfer()`.
    """
    multi_worker.patch_if_needed()
    policy = precision.resolve(mixed_precision)
    taps = list(layers) if isinstance(layers, (list, tuple)) else [layers or "last_conv"]
    source = resolve(backbone, _check_input_shape(input_shape), weights, backbone_kwargs)
    precision.apply(source.model, policy)
    shape = input_shape or tuple(source.model.input_shape[1:3]) + (3,)
    inputs = keras.Input(shape, name="image")
    x = _preprocessing_layer(source, "auto", "preprocessing")(inputs)
    net = build_backbone(source, taps, pooling, separate=True, dtype=policy)
    freezing.freeze(net)
    model = keras.Model(inputs, net(x))
    model.dtype_policy = policy
    return source.label.lower(), model


def _preprocessing_layer(source, preprocessing, name):
    """The model's `preprocessing` part: the preset's ImageConverter, or an
    `ImagePreprocessing` in float32 (mean subtraction in bfloat16 would round
    pixels to whole numbers)."""
    mode = source.preprocessing if preprocessing == "auto" else preprocessing
    if isinstance(mode, keras.layers.Layer):
        return keras.Sequential([mode], name=name)
    return ImagePreprocessing(mode, dtype="float32", name=name)


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
    strategies.get(strategy)
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


def __getattr__(name):
    # The CHANGELOG promised `factory.head_layers` would keep importing.
    if name == "head_layers":
        warnings.warn(
            "`keras_transfer.factory.head_layers` moved to "
            "`keras_transfer.heads.classifier_head.head_layers`.",
            DeprecationWarning,
            stacklevel=2,
        )
        return classifier_head.head_layers
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
