"""Resolving what `transfer()` is given: constructors, built models, weights."""

import functools

import keras
import numpy as np
import pytest

import keras_transfer as kt
from tests.conftest import as_numpy, pixels, tiny_backbone

SMALL = dict(weights=None, input_shape=(32, 32, 3))


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


def test_corrupt_and_incompatible_weight_files_are_refused(tmp_path):
    corrupt = tmp_path / "corrupt.h5"
    corrupt.write_bytes(b"not an hdf5 file")
    with pytest.raises(ValueError, match="corrupt.h5"):
        kt.transfer("mobilenet", 2, weights=str(corrupt), input_shape=(32, 32, 3))
    other = tmp_path / "other.npz"
    kt.save_weights_npz(tiny_backbone(top=False), other)
    with pytest.raises(ValueError, match="other.npz"):
        kt.transfer("mobilenet", 2, weights=str(other), input_shape=(32, 32, 3))
