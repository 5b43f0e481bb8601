import keras
import pytest

from keras_transfer.backbones import registry
from tests.conftest import ROOT

ALL_CONSTRUCTORS = sorted(n for n in dir(keras.applications) if n[0].isupper())


def test_registry_covers_every_keras_applications_constructor():
    assert registry.constructor_names() == ALL_CONSTRUCTORS


@pytest.mark.parametrize(
    "name, expected",
    [
        ("resnet50", "ResNet50"),
        ("ResNet50", "ResNet50"),
        ("mobilenet_v2", "MobileNetV2"),
        ("MOBILENETV2", "MobileNetV2"),
        ("EfficientNetB0", "EfficientNetB0"),
        ("efficientnet_b0", "EfficientNetB0"),
        ("inception-resnet-v2", "InceptionResNetV2"),
        ("convnext_tiny", "ConvNeXtTiny"),
        ("nasnet_mobile", "NASNetMobile"),
    ],
)
def test_names_resolve_case_and_underscore_insensitively(name, expected):
    assert registry.resolve_name(name) == expected


def test_unknown_name_lists_close_matches():
    with pytest.raises(ValueError, match=r"Received: backbone='resnet05'.*ResNet50"):
        registry.resolve_name("resnet05")


def test_readme_backbone_table_is_generated_from_the_registry():
    # `python -m keras_transfer backbones --markdown` regenerates it.
    assert registry.markdown_table() in (ROOT / "README.md").read_text()
