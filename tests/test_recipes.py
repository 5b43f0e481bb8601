import keras
import numpy as np
import pytest

import keras_transfer as kt
from tests.conftest import BACKEND, as_numpy, pixels, tiny_backbone

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


def test_fine_tune_bad_input():
    with pytest.raises(ValueError, match="Received: epochs=0"):
        kt.fine_tune(_model(), (X, Y), epochs=0)
    with pytest.raises(ValueError, match="Received: schedule='cosine'"):
        kt.fine_tune(_model(), (X, Y), schedule="cosine")
    with pytest.raises(ValueError, match="Pass the layers to unfreeze explicitly"):
        kt.fine_tune(tiny_backbone(), (X, Y))
    with pytest.raises(ValueError, match="`train` must be a tuple.*Received: a list of 2"):
        kt.fine_tune(_model(), [X, Y])
    with pytest.raises(ValueError, match="`base_lr` must be a number. Received: base_lr='1e-3'"):
        kt.fine_tune(_model(), (X, Y), base_lr="1e-3")
    with pytest.raises(ValueError, match=r"`train` must be class indices in \[0, 2\)"):
        kt.fine_tune(_model(), (X, Y + 1))
    with pytest.raises(ValueError, match=r"Received: the label at index 0 is 0.5"):
        kt.fine_tune(_model(), (X, Y + 0.5))


def _state(model):
    return (
        [as_numpy(v).copy() for v in model.weights],
        [as_numpy(v).copy() for v in model.optimizer.variables],
    )


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


@pytest.mark.skipif(
    BACKEND == "torch",
    reason="Keras's PyTorch trainer allows only "
    "steps_per_execution=1; the torch test below checks that",
)
def test_tune_steps_per_execution_batches_a_tiny_step_and_restores_state():
    # A step of a few microseconds: Keras's per-step Python dominates, so it
    # takes many steps per execution to bring the host under 5%.
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(8),
            keras.layers.BatchNormalization(),
            keras.layers.Dense(2),
        ]
    )
    model.compile(keras.optimizers.Adam(1e-2), "mse")
    x, y = np.random.default_rng(0).random((256, 4)), np.zeros((256, 2))
    before = [as_numpy(v) for v in model.weights]
    # A timing on a shared machine: JAX's step is ~0.2 ms of dispatch against
    # ~0.1 ms of Keras's Python, so a burst of load can hide the difference
    # in one measurement (1 in 6 with six processes on two cores); up to
    # three measurements, each of which must put the state back.
    for _ in range(3):
        steps = kt.steps.tune_steps_per_execution(model, x, y, batch_size=4)
        for old, new in zip(before, model.weights):
            np.testing.assert_array_equal(old, as_numpy(new))
        assert int(as_numpy(model.optimizer.iterations)) == 0
        if steps >= 2:
            break
    assert 2 <= steps <= 64 and model.steps_per_execution == steps
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)  # runs with the new count
    assert np.isfinite(history.history["loss"][0])
    with pytest.raises(ValueError, match=r"Received: target=1.5"):
        kt.steps.tune_steps_per_execution(model, x, y, target=1.5)


@pytest.mark.skipif(BACKEND != "torch", reason="the PyTorch backend's rule")
def test_tune_steps_per_execution_is_one_on_torch():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile("adam", "mse")
    assert kt.steps.tune_steps_per_execution(model, np.zeros((8, 4)), np.zeros((8, 2))) == 1
