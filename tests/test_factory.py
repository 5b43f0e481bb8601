import functools

import keras
import numpy as np
import pytest

import keras_transfer as kt
from keras_transfer.layers import FeatureFusion, InfNormalize, TransferMatrix
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


def test_constructor_partial_and_backbone_kwargs():
    a = kt.transfer(functools.partial(keras.applications.MobileNetV2, alpha=0.35), **SMALL)
    b = kt.transfer("mobilenet_v2", backbone_kwargs={"alpha": 0.35}, **SMALL)
    assert a.output.shape[-1] == b.output.shape[-1] == 1280
    assert a.count_params() == b.count_params() == 410208


def test_built_model_with_top_is_cut_and_left_usable():
    original = tiny_backbone(top=True)
    x = pixels()
    before = as_numpy(original(x))
    model = kt.transfer(original, 2, preprocessing="tf")
    assert tuple(model(x).shape) == (4, 2)
    backbone = model.get_layer("backbone")
    assert "predictions" not in [l.name for l in backbone.layers]
    assert backbone.output.shape[-1] == 16  # pooled after relu2, the last conv
    np.testing.assert_allclose(as_numpy(original(x)), before, rtol=1e-6)


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


@pytest.mark.parametrize(
    "pooling, width", [("avg", 16), ("max", 16), ("avgmax", 32), ("flatten", 8 * 8 * 16)]
)
def test_pooling(pooling, width):
    model = kt.transfer(tiny_backbone(top=False), pooling=pooling)
    assert model.output.shape[-1] == width


def test_pooling_none_returns_the_feature_map():
    model = kt.transfer(tiny_backbone(top=False), pooling=None)
    assert tuple(model.output.shape) == (None, 8, 8, 16)
    with pytest.raises(ValueError, match="Received: pooling=None with num_classes=2"):
        kt.transfer(tiny_backbone(top=False), 2, pooling=None)


def test_feature_layer_by_layer_block_and_list():
    by_layer = kt.transfer(tiny_backbone(top=False), feature_layer="relu0")
    assert by_layer.output.shape[-1] == 8
    by_block = kt.transfer("mobilenet", feature_layer="block_5", **SMALL)
    assert by_block.output.shape[-1] == 256
    multi = kt.transfer(tiny_backbone(top=False), feature_layer=["relu0", "last_conv"])
    assert multi.output.shape[-1] == 8 + 16
    with pytest.raises(ValueError, match=r"Received: feature_layer='relu9'.*relu0"):
        kt.transfer(tiny_backbone(top=False), feature_layer="relu9")


def test_head_options():
    hidden = kt.transfer(tiny_backbone(top=False), 3, head=[12, 6])
    head = hidden.get_layer("head")
    assert [l.name for l in head.layers if isinstance(l, keras.layers.Dense)] == [
        "hidden_0",
        "hidden_1",
        "classifier",
    ]
    assert any(isinstance(l, keras.layers.BatchNormalization) for l in head.layers)
    custom = kt.transfer(tiny_backbone(top=False), 3, head=keras.layers.Dense(7, name="mine"))
    assert custom.output.shape[-1] == 7
    probs = kt.transfer(tiny_backbone(top=False), 3, classifier_activation="softmax")
    np.testing.assert_allclose(as_numpy(probs(pixels())).sum(-1), 1.0, rtol=1e-5)


def test_transfer_matrix_and_inf_normalize_are_the_methods_head():
    model = kt.transfer(tiny_backbone(top=False), transfer_matrix=6, inf_normalize=True)
    head = model.get_layer("head")
    matrix = head.get_layer("transfer_matrix")
    assert isinstance(matrix, TransferMatrix) and matrix.use_gate and matrix.units == 6
    assert isinstance(head.get_layer("inf_normalize"), InfNormalize)
    out = as_numpy(model(pixels()))
    nonzero = np.abs(out).max(-1) > 0
    np.testing.assert_allclose(np.abs(out[nonzero]).max(-1), 1.0, rtol=1e-5)
    assert out.min() >= 0  # ReLU


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


def test_corrupt_and_incompatible_weight_files_are_refused(tmp_path):
    corrupt = tmp_path / "corrupt.h5"
    corrupt.write_bytes(b"not an hdf5 file")
    with pytest.raises(ValueError, match="corrupt.h5"):
        kt.transfer("mobilenet", 2, weights=str(corrupt), input_shape=(32, 32, 3))
    other = tmp_path / "other.npz"
    kt.save_weights_npz(tiny_backbone(top=False), other)
    with pytest.raises(ValueError, match="other.npz"):
        kt.transfer("mobilenet", 2, weights=str(other), input_shape=(32, 32, 3))


def test_a_built_sequential_backbone_is_accepted():
    backbone = keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            keras.layers.Conv2D(4, 3, name="conv_a"),
            keras.layers.Conv2D(4, 3, name="conv_b"),
        ]
    )
    model = kt.transfer(backbone, 2, preprocessing="unit", strategy="fine_tune")
    assert [name for name, _ in model.get_layer("backbone").blocks] == ["conv_a", "conv_b"]
    assert tuple(model.output.shape) == (None, 2)


def test_numpy_class_counts_and_free_input_sizes_are_accepted():
    model = kt.transfer("mobilenet", np.int64(3), weights=None, input_shape=(None, None, 3))
    assert tuple(model.output.shape) == (None, 3)
    assert tuple(model.input_shape) == (None, None, None, 3)
