"""Cutting a backbone at its taps, and pooling."""

import pytest

import keras_transfer as kt
from tests.conftest import tiny_backbone

SMALL = dict(weights=None, input_shape=(32, 32, 3))


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
