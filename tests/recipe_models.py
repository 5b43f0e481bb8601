"""What the recipe tests share: tiny data, a tiny transfer model, and
recorders of what trained."""

import keras
import numpy as np

import keras_transfer as kt
from tests.conftest import as_numpy, pixels, tiny_backbone

X = pixels(16)


Y = np.arange(16) % 2


LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _model():
    return kt.transfer(tiny_backbone(), 2, preprocessing="tf")


class _Trainable(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.per_epoch = []

    def on_epoch_begin(self, epoch, logs=None):
        self.per_epoch.append((epoch, len(self.model.trainable_variables)))


def _state(model):
    return (
        [as_numpy(v).copy() for v in model.weights],
        [as_numpy(v).copy() for v in model.optimizer.variables],
    )
