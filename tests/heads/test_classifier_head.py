"""The classifier head: built from `transfer()`'s options, found and set."""

import keras
import numpy as np
import pytest

import keras_transfer as kt
from keras_transfer.heads.classifier_head import find_head, linear_classifier, set_linear_head
from keras_transfer.layers import InfNormalize, TransferMatrix
from tests.conftest import as_numpy, pixels, tiny_backbone


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


def test_a_linear_head_is_found_and_a_probe_set_into_it():
    model = kt.transfer(tiny_backbone(), 3, preprocessing="unit")
    dense = linear_classifier(model)
    assert find_head(model).name == "head" and dense.name == "classifier"
    kernel = np.arange(16 * 3, dtype="float64").reshape(16, 3)
    set_linear_head(dense, {"kernel": kernel, "bias": np.ones(3)})
    assert np.array_equal(as_numpy(dense.kernel), kernel.astype("float32"))
    with pytest.raises(ValueError, match="head must be dropout plus one Dense"):
        linear_classifier(kt.transfer(tiny_backbone(), 3, head=[4], preprocessing="unit"))
    with pytest.raises(ValueError, match="without a layer named 'head'"):
        find_head(tiny_backbone())
