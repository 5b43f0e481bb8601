"""`TokenPooling`: a transformer's tokens read out as one vector."""

import numpy as np
import pytest

from keras_transfer.layers import TokenPooling
from tests.conftest import as_numpy
from tests.layer_test_case import run_layer_test

TOKENS = np.random.default_rng(0).normal(size=(2, 5, 4)).astype("float32")


@pytest.mark.parametrize(
    "mode, width", [("avg", 4), ("max", 4), ("avgmax", 8), ("cls", 4), ("cls+avg", 8)]
)
def test_layer_harness(mode, width, tmp_path):
    run_layer_test(
        TokenPooling,
        {"mode": mode, "prefix_tokens": 1, "class_token": True},
        TOKENS,
        (2, width),
        tmp_path=tmp_path,
        expected_num_trainable_weights=0,
        atol=1e-5,
    )


def test_poolings_read_only_the_patch_tokens_but_cls():
    # Tokens: class, 2 registers, then 2 patches; width 2.
    tokens = np.array([[[1, 2], [9, 9], [-9, -9], [3, 0], [5, 4]]], "float32")

    def pooled(mode):
        layer = TokenPooling(mode, prefix_tokens=3, class_token=True)
        return as_numpy(layer(tokens))[0].tolist()

    assert pooled("avg") == [4.0, 2.0] and pooled("max") == [5.0, 4.0]
    assert pooled("cls") == [1.0, 2.0] and pooled("cls+avg") == [1.0, 2.0, 4.0, 2.0]
    with pytest.raises(ValueError, match="`mode` must be one of .* Received: mode='mean'"):
        TokenPooling("mean")
