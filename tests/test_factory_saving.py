"""Every model transfer() builds saves to .keras and reloads with identical
predictions, with no custom_objects."""

import keras
import numpy as np
import pytest

import keras_transfer as kt
from tests.conftest import pixels, tiny_backbone

CONFIGS = {
    "feature_extraction": lambda: kt.transfer(tiny_backbone(), 3, preprocessing="caffe"),
    "fine_tune_train_affine": lambda: kt.transfer(
        tiny_backbone(),
        3,
        strategy="fine_tune",
        unfreeze=1,
        bn="train_affine",
        preprocessing="torch",
        head=[8],
    ),
    "feature_model_multiscale": lambda: kt.transfer(
        tiny_backbone(top=False), feature_layer=["relu0", "last_conv"], pooling="avgmax"
    ),
    "method_head": lambda: kt.transfer(tiny_backbone(), 3, transfer_matrix=6, inf_normalize=True),
    "fused_attention": lambda: kt.transfer(
        [tiny_backbone(name="a"), tiny_backbone(name="b")], 3, fusion="attention"
    ),
    "augmented_grayscale": lambda: kt.transfer(
        "mobilenet",
        2,
        weights=None,
        input_shape=(32, 32, 1),
        augmentation=[keras.layers.RandomFlip(), keras.layers.RandomRotation(0.1)],
    ),
    "feature_map": lambda: kt.transfer(tiny_backbone(), pooling=None),
}


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_round_trip_gives_identical_predictions(tmp_path, config):
    model = CONFIGS[config]()
    model.set_weights([w + 0.01 for w in model.get_weights()])
    channels = model.input_shape[-1]
    x = pixels(channels=channels)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    original, restored = (
        model.get_layer(_backbone_name(model)),
        loaded.get_layer(_backbone_name(model)),
    )
    assert isinstance(restored, kt.BackboneModel)
    assert restored.blocks == original.blocks and restored.bn == original.bn
    assert [l.trainable for l in restored.layers if l.weights] == [
        l.trainable for l in original.layers if l.weights
    ]
    assert len(loaded.trainable_weights) == len(model.trainable_weights)


def _backbone_name(model):
    return next(l.name for l in model.layers if l.name.startswith("backbone"))
