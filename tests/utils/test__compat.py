"""The Keras internals the library reads, behind one module: each one
answers on this Keras release (a release that moves one fails here first)."""

import keras

from keras_transfer.utils import _compat
from tests.conftest import tiny_backbone


def test_the_internals_answer_on_this_keras():
    model = tiny_backbone()
    assert _compat.is_functional(model)
    assert not _compat.is_functional(keras.Sequential([keras.layers.Dense(2)]))
    nested = keras.Sequential([keras.Input((32, 32, 3)), model])
    names = [layer.name for layer in _compat.flatten_layers(nested, include_self=False)]
    assert "conv0" in names and "predictions" in names
    assert _compat.takes_training(keras.layers.Dropout(0.5))
    model.compile("adam", "mse", metrics=["mae"])
    assert _compat.compile_config(model)["loss"] == "mse"
    assert _compat.trainer_data_batches(keras.ops.zeros((10, 3)), None, 4) == 3
