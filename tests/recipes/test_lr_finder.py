"""`lr_find`: the range test, its suggestion and plot, and the model put back
exactly."""

import keras
import numpy as np
import pytest

import keras_transfer as kt
from tests.conftest import as_numpy
from tests.recipe_models import LOSS, X, Y, _model, _state


def test_lr_find_restores_weights_and_optimizer_state_exactly():
    model = _model()
    kt.unfreeze(model, blocks=1, bn="train")  # moving statistics change in the test
    model.compile(keras.optimizers.Adam(1e-3), LOSS)
    model.fit(X, Y, epochs=1, batch_size=8, verbose=0)
    weights, slots = _state(model)
    optimizer = model.optimizer
    result = kt.lr_find(model, (X, Y), start=1e-5, end=1.0, steps=6, batch_size=4)
    assert model.optimizer is optimizer
    after_weights, after_slots = _state(model)
    for a, b in zip(weights + slots, after_weights + after_slots):
        np.testing.assert_array_equal(a, b)
    assert 2 <= len(result.losses) <= 6
    assert result.learning_rates[0] == pytest.approx(1e-5)
    assert all(b > a for a, b in zip(result.learning_rates, result.learning_rates[1:]))
    assert result.suggestion in result.learning_rates
    # Training goes on from the restored state.
    model.fit(X, Y, epochs=1, batch_size=8, verbose=0)
    assert int(as_numpy(model.optimizer.iterations)) == 4


def test_lr_find_plot_and_bad_input():
    import matplotlib

    matplotlib.use("Agg")
    result = kt.LRFinderResult([1e-4, 1e-3, 1e-2, 1e-1], [1.0, 0.8, 0.5, 2.0])
    assert result.suggestion == pytest.approx(1e-3)
    ax = result.plot()
    assert ax.get_xscale() == "log"
    assert len(ax.lines) == 2  # the curve and the suggestion
    with pytest.raises(ValueError, match="needs a compiled model"):
        kt.lr_find(_model(), (X, Y))
    model = _model()
    model.compile("adam", LOSS)
    with pytest.raises(ValueError, match="Received: start=1, end=0.1"):
        kt.lr_find(model, (X, Y), start=1, end=0.1)
