import keras
import numpy as np
import pytest

import keras_transfer as kt
from keras_transfer.layers import FeatureFusion
from tests.conftest import as_numpy, pixels, tiny_backbone

SMALL = dict(weights=None, input_shape=(32, 32, 3))


def test_parts_are_named_in_order_and_take_raw_pixels():
    model = kt.transfer(
        tiny_backbone(), 3, augmentation=keras.layers.RandomFlip(), preprocessing="caffe"
    )
    assert [l.name for l in model.layers] == [
        "image",
        "preprocessing",
        "augmentation",
        "backbone",
        "head",
    ]
    assert model.get_layer("preprocessing").mode == "caffe"
    assert tuple(model(pixels()).shape) == (4, 3)


def test_feature_model_returns_the_embedding():
    model = kt.transfer(keras.applications.MobileNet, **SMALL)
    assert [l.name for l in model.layers] == ["image", "preprocessing", "backbone"]
    assert tuple(model.output.shape) == (None, 1024)


def test_list_of_backbones_is_fused():
    model = kt.transfer(["mobilenet", tiny_backbone(top=False)], 2, **SMALL)
    names = [l.name for l in model.layers]
    assert {"backbone_0", "backbone_1", "preprocessing_0", "preprocessing_1", "fusion"} <= set(
        names
    )
    assert model.get_layer("preprocessing_0").mode == "tf"
    assert model.get_layer("preprocessing_1").mode == "none"  # unregistered model
    assert isinstance(model.get_layer("fusion"), FeatureFusion)
    assert model.get_layer("fusion").output.shape[-1] == 1024 + 16
    assert tuple(model(pixels()).shape) == (4, 2)
    sources = [tiny_backbone(top=False, name="a"), tiny_backbone(top=False, name="b")]
    fused = kt.transfer(sources, 2, fusion="attention")
    assert fused.get_layer("fusion").output.shape[-1] == 16
    with pytest.raises(ValueError, match=r"Received: widths \[16, 32\]"):
        kt.transfer(
            [sources[0], tiny_backbone(False, name="c", widths=(8, 8, 32))], 2, fusion="sum"
        )


def test_grayscale_input_repeats_the_channel():
    model = kt.transfer("mobilenet", 2, weights=None, input_shape=(32, 32, 1))
    gray = pixels(channels=1)
    rgb = np.repeat(gray, 3, axis=-1)
    reference = kt.transfer("mobilenet", 2, **SMALL)
    reference.set_weights(model.get_weights())
    np.testing.assert_allclose(
        as_numpy(model(gray)), as_numpy(reference(rgb)), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (
            {"backbone": "resnet_fifty"},
            ValueError,
            r"Received: backbone='resnet_fifty'. Did you mean",
        ),
        ({"num_classes": 0}, ValueError, "Received: num_classes=0"),
        ({"strategy": "fine_tuning"}, ValueError, "Did you mean 'fine_tune'"),
        ({"input_shape": (32, 32, 2)}, ValueError, r"Received: input_shape=\(32, 32, 2\)"),
        ({"backbone": "xception", "input_shape": (32, 32, 3)}, ValueError, "at least 71x71"),
        ({"pooling": "mean"}, ValueError, "Received: pooling='mean'"),
        ({"bn": "frozen"}, ValueError, "Received: bn='frozen'"),
        ({"backbone": 42}, TypeError, "Received: backbone=42"),
        ({"weights": "/nonexistent/w.h5"}, FileNotFoundError, "/nonexistent/w.h5"),
        ({"input_shape": (0, 0, 3)}, ValueError, r"positive sizes.*Received: input_shape=\(0, 0"),
        (
            {"backbone_kwargs": {"alpha": "0.35"}},
            ValueError,
            r"MobileNet refused `backbone_kwargs`.*Received: backbone_kwargs=\{'alpha': '0.35'\}",
        ),
        ({"backbone_kwargs": {"alpah": 0.35}}, ValueError, "refused `backbone_kwargs`.*alpah"),
    ],
)
def test_bad_input_says_what_was_received(kwargs, error, message):
    arguments = {"backbone": "mobilenet", "num_classes": 2, **SMALL}
    arguments.update(kwargs)
    with pytest.raises(error, match=message):
        kt.transfer(arguments.pop("backbone"), arguments.pop("num_classes"), **arguments)


def test_numpy_class_counts_and_free_input_sizes_are_accepted():
    model = kt.transfer("mobilenet", np.int64(3), weights=None, input_shape=(None, None, 3))
    assert tuple(model.output.shape) == (None, 3)
    assert tuple(model.input_shape) == (None, None, None, 3)
