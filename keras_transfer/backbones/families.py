"""The backbone tables, as data: one row per keras.applications family
(`FAMILIES`) and per KerasHub family (`KERAS_HUB_FAMILIES`).

Adding a family means adding a row here; `registry` looks rows up. Each row gives
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
import typing

__all__ = ["FAMILIES", "KERAS_HUB_FAMILIES", "Family", "KerasHubFamily", "Variant"]


class Variant(typing.NamedTuple):
    """One constructor's facts; the tests check them against the built model."""

    size: int  # default input size
    parameters: int  # without the classifier top
    blocks: int  # feature blocks, from stem to top


@dataclasses.dataclass(frozen=True)
class Family:
    """A keras.applications family: its constructors' facts, its
    preprocessing, and how its layers split into blocks."""

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
        name="convnext",
        module="convnext",
        models={
            "ConvNeXtTiny": Variant(size=224, parameters=27_820_128, blocks=5),
            "ConvNeXtSmall": Variant(size=224, parameters=49_454_688, blocks=5),
            "ConvNeXtBase": Variant(size=224, parameters=87_566_464, blocks=5),
            "ConvNeXtLarge": Variant(size=224, parameters=196_230_336, blocks=5),
            "ConvNeXtXLarge": Variant(size=224, parameters=348_147_968, blocks=5),
        },
        preprocessing="builtin",
        min_size=32,
        blocks=((r"_(prestem_normalization|stem)$", "stem"), (r"_stage_(\d)_", r"stage_\1")),
        model_name=r"^convnext_",
    ),
    Family(
        name="densenet",
        module="densenet",
        models={
            "DenseNet121": Variant(size=224, parameters=7_037_504, blocks=5),
            "DenseNet169": Variant(size=224, parameters=12_642_880, blocks=5),
            "DenseNet201": Variant(size=224, parameters=18_321_984, blocks=5),
        },
        preprocessing="torch",
        min_size=32,
        blocks=(
            (r"^(conv1|pool1)_", "stem"),
            (r"^(?:conv|pool)(\d)_", r"conv\1"),
            (r"^(bn|relu)$", "conv5"),
        ),
        model_name=r"^densenet\d+$",
    ),
    Family(
        name="efficientnet",
        module="efficientnet",
        models={
            "EfficientNetB0": Variant(size=224, parameters=4_049_571, blocks=9),
            "EfficientNetB1": Variant(size=240, parameters=6_575_239, blocks=9),
            "EfficientNetB2": Variant(size=260, parameters=7_768_569, blocks=9),
            "EfficientNetB3": Variant(size=300, parameters=10_783_535, blocks=9),
            "EfficientNetB4": Variant(size=380, parameters=17_673_823, blocks=9),
            "EfficientNetB5": Variant(size=456, parameters=28_513_527, blocks=9),
            "EfficientNetB6": Variant(size=528, parameters=40_960_143, blocks=9),
            "EfficientNetB7": Variant(size=600, parameters=64_097_687, blocks=9),
        },
        preprocessing="builtin",
        min_size=32,
        blocks=_EFFICIENTNET_BLOCKS,
        model_name=r"^efficientnetb\d$",
    ),
    Family(
        name="efficientnet_v2",
        module="efficientnet_v2",
        models={
            "EfficientNetV2B0": Variant(size=224, parameters=5_919_312, blocks=8),
            "EfficientNetV2B1": Variant(size=240, parameters=6_931_124, blocks=8),
            "EfficientNetV2B2": Variant(size=260, parameters=8_769_374, blocks=8),
            "EfficientNetV2B3": Variant(size=300, parameters=12_930_622, blocks=8),
            "EfficientNetV2S": Variant(size=384, parameters=20_331_360, blocks=8),
            "EfficientNetV2M": Variant(size=480, parameters=53_150_388, blocks=9),
            "EfficientNetV2L": Variant(size=480, parameters=117_746_848, blocks=9),
        },
        preprocessing="builtin",
        min_size=32,
        blocks=_EFFICIENTNET_BLOCKS,
        model_name=r"^efficientnetv2-",
    ),
    Family(
        name="inception_v3",
        module="inception_v3",
        models={"InceptionV3": Variant(size=299, parameters=21_802_784, blocks=11)},
        preprocessing="tf",
        min_size=75,
        blocks=((r"^mixed(\d+)", r"mixed\1"),),
        model_name=r"^inception_v3$",
    ),
    Family(
        name="inception_resnet_v2",
        module="inception_resnet_v2",
        models={"InceptionResNetV2": Variant(size=299, parameters=54_336_736, blocks=44)},
        preprocessing="tf",
        min_size=75,
        blocks=(
            (r"^(block(?:35|17|8)_\d+|mixed_\d[a-z]|conv_7b)(?:_(?:mixed|conv|ac|bn))?$", r"\1"),
        ),
        model_name=r"^inception_resnet_v2$",
    ),
    Family(
        name="xception",
        module="xception",
        models={"Xception": Variant(size=299, parameters=20_861_480, blocks=14)},
        preprocessing="tf",
        min_size=71,
        blocks=((r"^(block\d+)_", r"\1"),),
        model_name=r"^xception$",
    ),
    Family(
        name="mobilenet",
        module="mobilenet",
        models={"MobileNet": Variant(size=224, parameters=3_228_864, blocks=14)},
        preprocessing="tf",
        min_size=32,
        blocks=((r"^conv1", "stem"), (r"^conv_(?:dw|pw|pad)_(\d+)", r"block_\1")),
        model_name=r"^mobilenet_[\d.]+_\d+$",
    ),
    Family(
        name="mobilenet_v2",
        module="mobilenet_v2",
        models={"MobileNetV2": Variant(size=224, parameters=2_257_984, blocks=19)},
        preprocessing="tf",
        min_size=32,
        blocks=(
            (r"^(Conv1|bn_Conv1|Conv1_relu)$", "stem"),
            (r"^expanded_conv_", "block_0"),
            (r"^block_(\d+)_", r"block_\1"),
            (r"^(Conv_1|Conv_1_bn|out_relu)$", "top"),
        ),
        model_name=r"^mobilenetv2_",
    ),
    Family(
        name="mobilenet_v3",
        module="mobilenet_v3",
        models={
            "MobileNetV3Small": Variant(size=224, parameters=939_120, blocks=13),
            "MobileNetV3Large": Variant(size=224, parameters=2_996_352, blocks=17),
        },
        preprocessing="builtin",
        min_size=32,
        blocks=(
            (r"^(conv|conv_bn)$", "stem"),
            (r"^expanded_conv_(\d+)_", r"block_\1"),
            (r"^expanded_conv_", "block_0"),
            (r"^conv_1(_bn)?$", "top"),
        ),
        model_name=r"^MobilenetV3",
    ),
    Family(
        name="nasnet",
        module="nasnet",
        models={
            "NASNetMobile": Variant(size=224, parameters=4_269_716, blocks=17),
            "NASNetLarge": Variant(size=331, parameters=84_916_818, blocks=23),
        },
        preprocessing="tf",
        min_size=32,
        blocks=(
            (r"^stem_", "stem"),
            (r"_(stem_\d)$", r"cell_\1"),
            (r"_(reduce_\d+)$", r"cell_\1"),
            (r"^(?:normal|adjust|separable).*_(\d+)$", r"cell_\1"),
        ),
        model_name=r"^nasnet",
    ),
    Family(
        name="resnet",
        module="resnet",
        models={
            "ResNet50": Variant(size=224, parameters=23_587_712, blocks=5),
            "ResNet101": Variant(size=224, parameters=42_658_176, blocks=5),
            "ResNet152": Variant(size=224, parameters=58_370_944, blocks=5),
        },
        preprocessing="caffe",
        min_size=32,
        blocks=((r"^(conv1|pool1)_", "stem"), (r"^(conv[2-5])_", r"\1")),
        model_name=r"^resnet\d+$",
    ),
    Family(
        name="resnet_v2",
        module="resnet_v2",
        models={
            "ResNet50V2": Variant(size=224, parameters=23_564_800, blocks=5),
            "ResNet101V2": Variant(size=224, parameters=42_626_560, blocks=5),
            "ResNet152V2": Variant(size=224, parameters=58_331_648, blocks=5),
        },
        preprocessing="tf",
        min_size=32,
        blocks=((r"^(conv1|pool1)_", "stem"), (r"^(conv[2-5])_", r"\1"), (r"^post_", "conv5")),
        model_name=r"^resnet\d+v2$",
    ),
    Family(
        name="vgg",
        module="vgg16",
        models={
            "VGG16": Variant(size=224, parameters=14_714_688, blocks=5),
            "VGG19": Variant(size=224, parameters=20_024_384, blocks=5),
        },
        preprocessing="caffe",
        min_size=32,
        blocks=((r"^(block\d)_", r"\1"),),
        model_name=r"^vgg(16|19)$",
    ),
)


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
    name="dinov2",
    backbone_class="DINOV2Backbone",
    kind="transformer",
    preprocessing="torch",  # ImageNet mean and standard deviation
    blocks=((r"(^|_)embeddings$", "stem"), (r"^layers_\d+$", r"\g<0>")),
    unroll=("encoder", (), "layers", ()),
    class_token=True,
    register_tokens="num_register_tokens",
    pooling="cls+avg",
    patch_size="patch_size",
)

KERAS_HUB_FAMILIES = (
    KerasHubFamily(
        name="vit",
        backbone_class="ViTBackbone",
        kind="transformer",
        preprocessing="tf",  # KerasHub's ViT presets scale pixels to [-1, 1]
        blocks=((r"^vit_patching_and_embedding$", "stem"), (r"^transformer_block_\d+$", r"\g<0>")),
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
        name="clip",
        backbone_class="CLIPVisionEncoder",
        kind="transformer",
        preprocessing="torch",  # ImageNet statistics; CLIP's presets bring their own (close) ones
        blocks=((r"(^|_)(embedding|pre_layer_norm)$", "stem"), (r"encoder_block_\d+$", r"\g<0>")),
        class_token=True,
        pooling="cls",
        patch_size="patch_size",
        position_table="position_embedding/embeddings",
    ),
    KerasHubFamily(
        name="clip",
        backbone_class="CLIPBackbone",
        kind="two-tower",
        preprocessing="none",
        blocks=(),
        tower="vision_encoder",
    ),
    KerasHubFamily(
        name="siglip",
        backbone_class="SigLIPVisionEncoder",
        kind="transformer",
        preprocessing="tf",  # SigLIP scales pixels to [-1, 1]
        blocks=((r"(^|_)embedding$", "stem"), (r"encoder_block_\d+$", r"\g<0>")),
        # Its attention-pooling head gives the top's vector; "avg" reads the
        # patch tokens of an intermediate tap.
        pooling="avg",
        patch_size="patch_size",
        position_table="position_embedding/embeddings",
    ),
    KerasHubFamily(
        name="siglip",
        backbone_class="SigLIPBackbone",
        kind="two-tower",
        preprocessing="none",
        blocks=(),
        tower="vision_encoder",
    ),
    KerasHubFamily(
        name="resnet",
        backbone_class="ResNetBackbone",
        kind="cnn",
        preprocessing="torch",
        blocks=((r"^(conv1|pool1)_", "stem"), (r"^stack(\d+)_block(\d+)_", r"stack\1_block\2")),
    ),
    KerasHubFamily(
        name="efficientnet",
        backbone_class="EfficientNetBackbone",
        kind="cnn",
        preprocessing="torch",
        # Each MBConv block (block2a, block2b, ...), as a ResNet's residual blocks.
        blocks=((r"^stem_", "stem"), (r"^(block\d+[a-z]+)_", r"\1"), (r"^top_", "top")),
    ),
    KerasHubFamily(
        name="densenet",
        backbone_class="DenseNetBackbone",
        kind="cnn",
        preprocessing="torch",
        blocks=(
            (r"^(conv1|pool1)", "stem"),
            (r"^(stack\d+_block\d+)_", r"\1"),
            (r"^(transition\d+)_", r"\1"),
        ),
    ),
)
