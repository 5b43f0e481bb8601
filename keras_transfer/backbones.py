"""The backbone registry: one row per keras.applications family.

A row is data, not code: adding a family means adding a row. Each row gives
the family's preprocessing, each constructor's default input size, parameter
count and block count, the smallest input it accepts, and the rules that
split its layers into blocks, ordered from stem to top. A block's output is
a named feature tap, beside `"last_conv"`.

Block rules are `(regex, block name)` pairs tried in order on each layer's
name; the name may use the regex's groups (`r"conv\\1"`). A layer that no
rule names (Keras's generic `conv2d_3`, `add_7`, ...) joins the block of the
next named layer, or, past the last one, the block before it. Layers are in
topological order, so blocks come out from stem to top; a block is a set of
layers, which need not be contiguous where cells take two inputs (NASNet).
"""

import dataclasses
import difflib
import importlib
import re
import typing

import keras

__all__ = [
    "FAMILIES",
    "KERAS_HUB_FAMILIES",
    "Family",
    "KerasHubFamily",
    "Variant",
    "constructor",
    "constructor_names",
    "family_of_constructor",
    "family_of_model",
    "keras_hub_family",
    "keras_hub_table",
    "markdown_table",
    "resolve_name",
    "split_blocks",
    "table",
]


class Variant(typing.NamedTuple):
    """One constructor's facts; the tests check them against the built model."""

    size: int  # default input size
    parameters: int  # without the classifier top
    blocks: int  # feature blocks, from stem to top


@dataclasses.dataclass(frozen=True)
class Family:
    name: str
    module: str  # keras.applications.<module>.preprocess_input
    models: dict  # constructor name -> Variant
    preprocessing: str  # caffe, tf, torch (keras.applications' modes) or builtin
    min_size: int
    blocks: tuple  # ((regex, block name), ...)
    model_name: str  # regex on a built model's .name


# EfficientNet and EfficientNetV2 name their layers alike.
_EFFICIENTNET_BLOCKS = (
    (r"^(rescaling|normalization)(_\d+)?$", "stem"),
    (r"^stem_", "stem"),
    (r"^block(\d)", r"block\1"),
    (r"^top_", "top"),
)

FAMILIES = (
    Family(
        "convnext",
        "convnext",
        {
            "ConvNeXtTiny": Variant(224, 27_820_128, 5),
            "ConvNeXtSmall": Variant(224, 49_454_688, 5),
            "ConvNeXtBase": Variant(224, 87_566_464, 5),
            "ConvNeXtLarge": Variant(224, 196_230_336, 5),
            "ConvNeXtXLarge": Variant(224, 348_147_968, 5),
        },
        "builtin",
        32,
        ((r"_(prestem_normalization|stem)$", "stem"), (r"_stage_(\d)_", r"stage_\1")),
        r"^convnext_",
    ),
    Family(
        "densenet",
        "densenet",
        {
            "DenseNet121": Variant(224, 7_037_504, 5),
            "DenseNet169": Variant(224, 12_642_880, 5),
            "DenseNet201": Variant(224, 18_321_984, 5),
        },
        "torch",
        32,
        (
            (r"^(conv1|pool1)_", "stem"),
            (r"^(?:conv|pool)(\d)_", r"conv\1"),
            (r"^(bn|relu)$", "conv5"),
        ),
        r"^densenet\d+$",
    ),
    Family(
        "efficientnet",
        "efficientnet",
        {
            "EfficientNetB0": Variant(224, 4_049_571, 9),
            "EfficientNetB1": Variant(240, 6_575_239, 9),
            "EfficientNetB2": Variant(260, 7_768_569, 9),
            "EfficientNetB3": Variant(300, 10_783_535, 9),
            "EfficientNetB4": Variant(380, 17_673_823, 9),
            "EfficientNetB5": Variant(456, 28_513_527, 9),
            "EfficientNetB6": Variant(528, 40_960_143, 9),
            "EfficientNetB7": Variant(600, 64_097_687, 9),
        },
        "builtin",
        32,
        _EFFICIENTNET_BLOCKS,
        r"^efficientnetb\d$",
    ),
    Family(
        "efficientnet_v2",
        "efficientnet_v2",
        {
            "EfficientNetV2B0": Variant(224, 5_919_312, 8),
            "EfficientNetV2B1": Variant(240, 6_931_124, 8),
            "EfficientNetV2B2": Variant(260, 8_769_374, 8),
            "EfficientNetV2B3": Variant(300, 12_930_622, 8),
            "EfficientNetV2S": Variant(384, 20_331_360, 8),
            "EfficientNetV2M": Variant(480, 53_150_388, 9),
            "EfficientNetV2L": Variant(480, 117_746_848, 9),
        },
        "builtin",
        32,
        _EFFICIENTNET_BLOCKS,
        r"^efficientnetv2-",
    ),
    Family(
        "inception_v3",
        "inception_v3",
        {"InceptionV3": Variant(299, 21_802_784, 11)},
        "tf",
        75,
        ((r"^mixed(\d+)", r"mixed\1"),),
        r"^inception_v3$",
    ),
    Family(
        "inception_resnet_v2",
        "inception_resnet_v2",
        {"InceptionResNetV2": Variant(299, 54_336_736, 44)},
        "tf",
        75,
        ((r"^(block(?:35|17|8)_\d+|mixed_\d[a-z]|conv_7b)(?:_(?:mixed|conv|ac|bn))?$", r"\1"),),
        r"^inception_resnet_v2$",
    ),
    Family(
        "xception",
        "xception",
        {"Xception": Variant(299, 20_861_480, 14)},
        "tf",
        71,
        ((r"^(block\d+)_", r"\1"),),
        r"^xception$",
    ),
    Family(
        "mobilenet",
        "mobilenet",
        {"MobileNet": Variant(224, 3_228_864, 14)},
        "tf",
        32,
        ((r"^conv1", "stem"), (r"^conv_(?:dw|pw|pad)_(\d+)", r"block_\1")),
        r"^mobilenet_[\d.]+_\d+$",
    ),
    Family(
        "mobilenet_v2",
        "mobilenet_v2",
        {"MobileNetV2": Variant(224, 2_257_984, 19)},
        "tf",
        32,
        (
            (r"^(Conv1|bn_Conv1|Conv1_relu)$", "stem"),
            (r"^expanded_conv_", "block_0"),
            (r"^block_(\d+)_", r"block_\1"),
            (r"^(Conv_1|Conv_1_bn|out_relu)$", "top"),
        ),
        r"^mobilenetv2_",
    ),
    Family(
        "mobilenet_v3",
        "mobilenet_v3",
        {
            "MobileNetV3Small": Variant(224, 939_120, 13),
            "MobileNetV3Large": Variant(224, 2_996_352, 17),
        },
        "builtin",
        32,
        (
            (r"^(conv|conv_bn)$", "stem"),
            (r"^expanded_conv_(\d+)_", r"block_\1"),
            (r"^expanded_conv_", "block_0"),
            (r"^conv_1(_bn)?$", "top"),
        ),
        r"^MobilenetV3",
    ),
    Family(
        "nasnet",
        "nasnet",
        {"NASNetMobile": Variant(224, 4_269_716, 17), "NASNetLarge": Variant(331, 84_916_818, 23)},
        "tf",
        32,
        (
            (r"^stem_", "stem"),
            (r"_(stem_\d)$", r"cell_\1"),
            (r"_(reduce_\d+)$", r"cell_\1"),
            (r"^(?:normal|adjust|separable).*_(\d+)$", r"cell_\1"),
        ),
        r"^nasnet",
    ),
    Family(
        "resnet",
        "resnet",
        {
            "ResNet50": Variant(224, 23_587_712, 5),
            "ResNet101": Variant(224, 42_658_176, 5),
            "ResNet152": Variant(224, 58_370_944, 5),
        },
        "caffe",
        32,
        ((r"^(conv1|pool1)_", "stem"), (r"^(conv[2-5])_", r"\1")),
        r"^resnet\d+$",
    ),
    Family(
        "resnet_v2",
        "resnet_v2",
        {
            "ResNet50V2": Variant(224, 23_564_800, 5),
            "ResNet101V2": Variant(224, 42_626_560, 5),
            "ResNet152V2": Variant(224, 58_331_648, 5),
        },
        "tf",
        32,
        ((r"^(conv1|pool1)_", "stem"), (r"^(conv[2-5])_", r"\1"), (r"^post_", "conv5")),
        r"^resnet\d+v2$",
    ),
    Family(
        "vgg",
        "vgg16",
        {"VGG16": Variant(224, 14_714_688, 5), "VGG19": Variant(224, 20_024_384, 5)},
        "caffe",
        32,
        ((r"^(block\d)_", r"\1"),),
        r"^vgg(16|19)$",
    ),
)

_BY_CONSTRUCTOR = {constructor: family for family in FAMILIES for constructor in family.models}


def _key(name):
    return re.sub(r"[\s_\-]", "", name).lower()


_BY_KEY = {_key(constructor): constructor for constructor in _BY_CONSTRUCTOR}
# Common spellings that differ from the constructor's name.
_BY_KEY.update({"inceptionresnet": "InceptionResNetV2", "inception": "InceptionV3"})


def constructor_names():
    """The names of every registered keras.applications constructor."""
    return sorted(_BY_CONSTRUCTOR)


def resolve_name(name):
    """`"resnet50"`, `"mobilenet_v2"`, `"EfficientNetB0"` -> constructor name.

    Raises:
        ValueError: for an unknown name, listing the close matches.
    """
    constructor = _BY_KEY.get(_key(name))
    if constructor is None:
        close = difflib.get_close_matches(_key(name), list(_BY_KEY), n=5, cutoff=0.5)
        close = [_BY_KEY[c] for c in close]
        raise ValueError(
            f"Unknown backbone name. Received: backbone={name!r}. "
            + (f"Did you mean one of {close}? " if close else "")
            + "Registered names: keras.applications constructors such as "
            "'resnet50', 'mobilenet_v2', 'EfficientNetB0' (case and "
            "underscores do not matter); see keras_transfer.backbones."
            "constructor_names()."
        )
    return constructor


def family_of_constructor(constructor_name):
    return _BY_CONSTRUCTOR.get(constructor_name)


@dataclasses.dataclass(frozen=True)
class KerasHubFamily:
    """A KerasHub backbone family: how `transfer()` reads its layers.

    A transformer's layers are nested in one encoder layer; `transfer()`
    rebuilds the backbone's graph with each of them at the top (`unroll`),
    so that they are blocks, taps and freezing units like a CNN's layers.
    """

    name: str
    backbone_class: str  # the KerasHub Backbone subclass
    kind: str  # "transformer" or "cnn"
    # An ImagePreprocessing mode for a Backbone built without its preset; a
    # preset brings its own ImageConverter, which wins.
    preprocessing: str
    blocks: tuple  # ((regex, block name), ...) on the (unrolled) layer names
    # The encoder layer's name, and its attributes called in turn: those
    # before the transformer layers, the list of them, those after.
    unroll: tuple = ()  # (encoder name, (before, ...), layers, (after, ...))
    # A backbone layer applied to the images whose output each transformer
    # layer takes as `position_embeddings`, with `num_prefix_tokens` (DINOv3's
    # rotary embeddings).
    rope: str | None = None
    class_token: str | bool = False  # a config key that says so, or a constant
    register_tokens: str | None = None  # the config key of their count
    pooling: str = "avg"  # the family's read-out, `pooling="auto"`
    patch_size: str | None = None  # the config key, for a clear size error
    # At another image size the backbone is rebuilt, and its weights loaded
    # as `from_preset(image_shape=...)` does: a CNN's and rotary embeddings
    # need nothing, and DINOv2 interpolates its position embeddings. Other
    # learned position tables, (prefix + grid rows, width), are named here by
    # the end of their path: `transfer()` resamples their grid bicubically,
    # as timm's `resample_abs_pos_embed` does.
    position_table: str | None = None
    # A two-tower model (CLIP, SigLIP): the attribute holding its vision
    # tower, whose own row then applies.
    tower: str | None = None


_DINOV2 = KerasHubFamily(
    "dinov2",
    "DINOV2Backbone",
    "transformer",
    "torch",  # ImageNet mean and standard deviation
    ((r"(^|_)embeddings$", "stem"), (r"^layers_\d+$", r"\g<0>")),
    unroll=("encoder", (), "layers", ()),
    class_token=True,
    register_tokens="num_register_tokens",
    pooling="cls+avg",
    patch_size="patch_size",
)

KERAS_HUB_FAMILIES = (
    KerasHubFamily(
        "vit",
        "ViTBackbone",
        "transformer",
        "tf",  # KerasHub's ViT presets scale pixels to [-1, 1]
        ((r"^vit_patching_and_embedding$", "stem"), (r"^transformer_block_\d+$", r"\g<0>")),
        unroll=("vit_encoder", ("dropout",), "encoder_layers", ("layer_norm",)),
        class_token="use_class_token",
        pooling="cls",
        patch_size="patch_size",
        position_table="position_embedding/embeddings",
    ),
    _DINOV2,
    # DINOv2's layout, with rotary embeddings in place of a position table.
    dataclasses.replace(
        _DINOV2, name="dinov3", backbone_class="DINOV3Backbone", rope="rope_embedding"
    ),
    KerasHubFamily(
        "clip",
        "CLIPVisionEncoder",
        "transformer",
        "torch",  # ImageNet statistics; CLIP's presets bring their own (close) ones
        ((r"(^|_)(embedding|pre_layer_norm)$", "stem"), (r"encoder_block_\d+$", r"\g<0>")),
        class_token=True,
        pooling="cls",
        patch_size="patch_size",
        position_table="position_embedding/embeddings",
    ),
    KerasHubFamily("clip", "CLIPBackbone", "two-tower", "none", (), tower="vision_encoder"),
    KerasHubFamily(
        "siglip",
        "SigLIPVisionEncoder",
        "transformer",
        "tf",  # SigLIP scales pixels to [-1, 1]
        ((r"(^|_)embedding$", "stem"), (r"encoder_block_\d+$", r"\g<0>")),
        # Its attention-pooling head gives the top's vector; "avg" reads the
        # patch tokens of an intermediate tap.
        pooling="avg",
        patch_size="patch_size",
        position_table="position_embedding/embeddings",
    ),
    KerasHubFamily("siglip", "SigLIPBackbone", "two-tower", "none", (), tower="vision_encoder"),
    KerasHubFamily(
        "resnet",
        "ResNetBackbone",
        "cnn",
        "torch",
        ((r"^(conv1|pool1)_", "stem"), (r"^stack(\d+)_block(\d+)_", r"stack\1_block\2")),
    ),
    KerasHubFamily(
        "efficientnet",
        "EfficientNetBackbone",
        "cnn",
        "torch",
        # Each MBConv block (block2a, block2b, ...), as a ResNet's residual blocks.
        ((r"^stem_", "stem"), (r"^(block\d+[a-z]+)_", r"\1"), (r"^top_", "top")),
    ),
    KerasHubFamily(
        "densenet",
        "DenseNetBackbone",
        "cnn",
        "torch",
        (
            (r"^(conv1|pool1)", "stem"),
            (r"^(stack\d+_block\d+)_", r"\1"),
            (r"^(transition\d+)_", r"\1"),
        ),
    ),
)


def keras_hub_family(backbone):
    """The `KerasHubFamily` of a KerasHub Backbone instance, or `None`."""
    names = [cls.__name__ for cls in type(backbone).__mro__]
    for family in KERAS_HUB_FAMILIES:
        if family.backbone_class in names:
            return family
    return None


def family_of_model(model):
    """The family of a built keras.applications model, from its name."""
    for family in FAMILIES:
        if re.search(family.model_name, model.name, re.IGNORECASE):
            return family
    return None


def constructor(name):
    return getattr(keras.applications, name)


def split_blocks(layers, rules):
    """Groups layers into ordered blocks with a family's rules.

    Args:
        layers: the model's layers, in topological order (`model.layers`).
        rules: `((regex, block name), ...)`.

    Returns:
        A list of `(block name, [layer names])`, from stem to top, in order
        of each block's first layer. Input layers belong to no block.
    """
    compiled = [(re.compile(pattern), name) for pattern, name in rules]
    labels = []
    for layer in layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        label = None
        for pattern, name in compiled:
            match = pattern.search(layer.name)
            if match:
                label = match.expand(name)
                break
        labels.append([layer.name, label])
    # Unnamed layers join the next named block, or the last one at the end.
    following = None
    for entry in reversed(labels):
        if entry[1] is None:
            entry[1] = following
        following = entry[1]
    previous = None
    for entry in labels:
        if entry[1] is None:
            entry[1] = previous
        previous = entry[1]
    blocks = {}
    for layer_name, label in labels:
        blocks.setdefault(label or "features", []).append(layer_name)
    return list(blocks.items())


def table():
    """One row per registered constructor: the facts `keras-transfer backbones`
    prints and the README's backbone table shows.

    Example:

    >>> row = keras_transfer.backbones.table()[0]
    >>> sorted(row)
    ['blocks', 'family', 'input_size', 'min_size', 'name', 'parameters', 'preprocessing']
    """
    return [
        {
            "name": name,
            "family": family.name,
            "input_size": variant.size,
            "min_size": family.min_size,
            "preprocessing": family.preprocessing,
            "blocks": variant.blocks,
            "parameters": variant.parameters,
        }
        for family in FAMILIES
        for name, variant in family.models.items()
    ]


def keras_hub_table():
    """One row per preset of the registered KerasHub families, in `table()`'s
    form (sizes and blocks come with the preset, so they are `None`); empty
    without the keras-hub extra. Imports keras_hub (and so TensorFlow)."""
    if importlib.util.find_spec("keras_hub") is None:
        return []
    keras_hub = importlib.import_module("keras_hub")
    return [
        {
            "name": f"keras_hub:{name}",
            "family": f"{family.name} (KerasHub {family.kind})",
            "input_size": None,
            "min_size": None,
            "preprocessing": "preset",
            "blocks": None,
            "parameters": preset.get("metadata", {}).get("params"),
        }
        for family in KERAS_HUB_FAMILIES
        for name, preset in getattr(keras_hub.models, family.backbone_class).presets.items()
    ]


def markdown_table():
    """`table()` as a Markdown table (the README's is generated from it)."""
    lines = [
        "| backbone | family | input size | min size | preprocessing | blocks | parameters |",
        "| --- | --- | ---: | ---: | --- | ---: | ---: |",
    ]
    for row in table():
        lines.append(
            f"| `{row['name']}` | {row['family']} | {row['input_size']} | "
            f"{row['min_size']} | {row['preprocessing']} | {row['blocks']} | "
            f"{row['parameters'] / 1e6:.1f} M |"
        )
    return "\n".join(lines)
