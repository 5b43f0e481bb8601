"""`BackboneModel` and block discovery."""

import keras
import pytest

import keras_transfer as kt
from tests.conftest import tiny_backbone


def test_blocks_of_a_registered_keras_applications_model():
    model = keras.applications.MobileNet(weights=None, include_top=False, input_shape=(32, 32, 3))
    kt.unfreeze(model, blocks=1)
    assert {l.name for l in model.layers if l.trainable_weights} == {"conv_dw_13", "conv_pw_13"}


def test_unknown_model_blocks_say_how_to_pass_layers():
    model = tiny_backbone()
    with pytest.raises(ValueError, match=r"kt.unfreeze\(model, blocks=\["):
        kt.unfreeze(model, blocks=2)
    kt.unfreeze(model, blocks=["conv2", "predictions"])
    assert {l.name for l in model.layers if l.trainable_weights} == {"conv2", "predictions"}
    with pytest.raises(ValueError, match=r"Received: \['conv9'\]"):
        kt.unfreeze(model, blocks=["conv9"])
    with pytest.raises(ValueError, match="Received: blocks=-1"):
        kt.unfreeze(kt.transfer(tiny_backbone(), 2), blocks=-1)
    with pytest.raises(ValueError, match=r"Received: blocks='conv7'. Blocks: \['conv0'"):
        kt.unfreeze(kt.transfer(tiny_backbone(), 2), blocks="conv7")
