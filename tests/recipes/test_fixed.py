"""The fixed recipe: the head, then everything under per-block rates."""

import numpy as np
import pytest

import keras_transfer as kt
from keras_transfer.recipes import fixed
from tests.conftest import as_numpy, runs_once_in
from tests.recipe_models import X, Y, _model, _Trainable


def test_fine_tune_trains_the_head_then_everything_with_blockwise_rates():
    model = _model()
    conv0 = model.get_layer("backbone").get_layer("conv0").kernel
    start = as_numpy(conv0).copy()
    seen = _Trainable()
    history = kt.fine_tune(
        model, (X, Y), validation_data=(X, Y), epochs=2, batch_size=8, callbacks=[seen], verbose=0
    )
    assert history.phases == [
        {"name": "head", "first_epoch": 0, "epochs": 1},
        {"name": "unfrozen", "first_epoch": 1, "epochs": 2},
    ]
    assert history.epoch == [0, 1, 2]
    assert len(history.history["val_accuracy"]) == 3
    assert seen.per_epoch == [(0, 2), (1, 8), (2, 8)]
    assert not np.allclose(as_numpy(conv0), start)
    optimizer = model.optimizer
    assert isinstance(optimizer, kt.optimizers.BlockwiseLR)
    # Stem 1/lr_mult of the head's rate, geometric in between.
    assert optimizer.multipliers["conv0"] == pytest.approx(0.01)
    assert optimizer.multipliers["conv1"] == pytest.approx(0.01 ** (2 / 3))
    # The one-cycle schedule ends near zero.
    assert float(as_numpy(optimizer.learning_rate)) < 1e-6


@runs_once_in("torch")
def test_unequal_classes_are_weighted_unless_balance_is_off():
    y = (np.arange(16) % 4 == 0).astype("int64")  # 12 to 4: 3 times
    losses = {}
    for balance in ("auto", False):
        history = kt.fine_tune(
            _model(), (X, y), epochs=1, freeze_epochs=0, batch_size=16, balance=balance, verbose=0
        )
        losses[balance] = history.history["loss"][0]
        assert history.balance["used"] is (balance == "auto")
    assert history.balance["why"] == "off: balance=False"
    assert losses["auto"] != pytest.approx(losses[False])  # the loss weighs class 1 more
    # The user's own class_weight wins.
    given = {"class_weight": {0: 1.0, 1: 1.0}}
    record = fixed.balance_fit(_model(), X, y, "auto", given)
    assert record["why"] == "the class_weight given" and given["class_weight"][1] == 1.0
