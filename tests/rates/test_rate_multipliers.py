"""Per-block rate multipliers: fastai's geometric spread and the layer-wise
decay."""

import keras
import numpy as np
import pytest

import keras_transfer as kt
from keras_transfer.rates.rate_multipliers import (
    block_multipliers,
    check_rate_arguments,
    geometric_multipliers,
    recipe_multipliers,
    unfreeze_multipliers,
)
from tests.conftest import as_numpy, pixels, tiny_backbone

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def test_geometric_multipliers_are_fastais_slice():
    assert geometric_multipliers(["a", "b", "c"], (1e-4, 1e-2)) == pytest.approx(
        {"a": 1e-2, "b": 1e-1, "c": 1.0}
    )
    with pytest.raises(ValueError, match=r"Received: lr_range=\(0.1, 0.01\)"):
        geometric_multipliers(["a"], (0.1, 0.01))


def test_unfreeze_with_lr_range_spreads_rates_from_lowest_block_to_head():
    model = kt.transfer(tiny_backbone(), 2, preprocessing="tf")
    model.compile(keras.optimizers.SGD(0.1), LOSS)
    kt.unfreeze(model, blocks=2, bn="train", lr_range=(1e-3, 1e-1))
    optimizer = model.optimizer
    assert float(as_numpy(optimizer.learning_rate)) == pytest.approx(0.1)
    # Two blocks and the head: 1e-2, 1e-1, then 1 (the default).
    assert optimizer.multipliers == pytest.approx(
        {"conv1": 0.01, "bn1": 0.01, "conv2": 0.1, "bn2": 0.1}
    )
    model.fit(pixels(8), np.arange(8) % 2, epochs=1, batch_size=8, verbose=0)
    with pytest.raises(ValueError, match="need a compiled model"):
        kt.unfreeze(kt.transfer(tiny_backbone(), 2), blocks=1, lr_range=(1e-3, 1e-2))


def test_rate_arguments_are_checked_in_one_place():
    with pytest.raises(ValueError, match=r"`lr_decay` must be in \(0, 1\]. Received: lr_decay=1.5"):
        check_rate_arguments(lr_decay=1.5)
    with pytest.raises(ValueError, match="not both"):
        check_rate_arguments(lr_range=(1e-4, 1e-2), lr_decay=0.5)
    check_rate_arguments(lr_range=(1e-4, 1e-2))
    model = kt.transfer(tiny_backbone(), 2, strategy="fine_tune", preprocessing="tf")
    decayed = unfreeze_multipliers(model, lr_decay=0.5)
    # Three blocks below the head: 0.5**3 at the stem, 0.5 at the top block.
    assert sorted(set(decayed.values())) == [0.125, 0.25, 0.5]
    assert recipe_multipliers(model, (1e-3, 1e-1)) == block_multipliers(model, (1e-3, 1e-1))
