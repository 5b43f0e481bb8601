import keras
import numpy as np
import pytest

import keras_transfer as kt
from keras_transfer.rates.optimizers import BlockwiseLR
from tests.conftest import BACKEND, as_numpy, pixels, tiny_backbone

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _two_layers():
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(3, name="body")(inputs)
    return keras.Model(inputs, keras.layers.Dense(2, name="head")(hidden))


def test_sgd_updates_differ_by_exactly_the_multipliers():
    model = _two_layers()
    variables = model.trainable_variables
    before = [as_numpy(v).copy() for v in variables]
    optimizer = BlockwiseLR(keras.optimizers.SGD(0.5), {"body": 0.1, "head": 1.0})
    grads = [keras.ops.ones(v.shape) for v in variables]
    optimizer.apply(grads, variables)
    steps = {v.path: (b - as_numpy(v)) for v, b in zip(variables, before)}
    np.testing.assert_allclose(steps["head/kernel"], 0.5, rtol=1e-6)
    np.testing.assert_allclose(steps["body/kernel"], 0.05, rtol=1e-6)
    ratio = steps["head/kernel"].mean() / steps["body/kernel"].mean()
    assert ratio == pytest.approx(10.0, rel=1e-6)


@pytest.mark.skipif(
    BACKEND != "jax",
    reason="stateless_apply is the JAX trainer's update "
    "path; TensorFlow refuses it and torch updates in place",
)
def test_stateless_apply_scales_the_same_way():
    model = _two_layers()
    variables = model.trainable_variables
    optimizer = BlockwiseLR(keras.optimizers.SGD(1.0), {"body": 0.1})
    optimizer.build(variables)
    values = [v.value for v in variables]
    grads = [keras.ops.ones(v.shape) for v in variables]
    new, _ = optimizer.stateless_apply([v.value for v in optimizer.variables], grads, values)
    deltas = {v.path: as_numpy(old) - as_numpy(n) for v, old, n in zip(variables, values, new)}
    np.testing.assert_allclose(deltas["body/kernel"], 0.1, rtol=1e-6)
    np.testing.assert_allclose(deltas["head/bias"], 1.0, rtol=1e-6)


def test_adam_keeps_one_iteration_count_and_a_readable_settable_rate():
    model = _two_layers()
    optimizer = BlockwiseLR(keras.optimizers.Adam(1e-3), {"body": 0.5})
    model.compile(optimizer, "mse")
    model.fit(np.ones((8, 4)), np.zeros((8, 2)), epochs=2, batch_size=4, verbose=0)
    assert int(as_numpy(model.optimizer.iterations)) == 4
    assert int(as_numpy(optimizer.inner_optimizer.iterations)) == 4
    assert float(as_numpy(model.optimizer.learning_rate)) == pytest.approx(1e-3)
    model.optimizer.learning_rate = 2e-4
    assert float(as_numpy(optimizer.inner_optimizer.learning_rate)) == pytest.approx(2e-4)


def test_works_with_a_schedule():
    schedule = kt.schedules.OneCycle(1e-2, total_steps=4)
    model = _two_layers()
    model.compile(BlockwiseLR(keras.optimizers.SGD(schedule), {"body": 0.0}), "mse")
    body = as_numpy(model.get_layer("body").kernel).copy()
    model.fit(np.ones((8, 4)), np.zeros((8, 2)), epochs=1, batch_size=4, verbose=0)
    np.testing.assert_array_equal(as_numpy(model.get_layer("body").kernel), body)  # 0: frozen
    assert float(as_numpy(model.optimizer.learning_rate)) == pytest.approx(float(schedule(2)))


def test_serialises_with_the_model_and_its_state(tmp_path):
    model = _two_layers()
    model.compile(BlockwiseLR("adam", {"body": 0.25}), "mse")
    model.fit(np.ones((8, 4)), np.zeros((8, 2)), epochs=1, batch_size=4, verbose=0)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.optimizer, BlockwiseLR)
    assert loaded.optimizer.multipliers == {"body": 0.25}
    assert len(loaded.optimizer.variables) == len(model.optimizer.variables)
    for a, b in zip(loaded.optimizer.variables, model.optimizer.variables):
        np.testing.assert_array_equal(as_numpy(a), as_numpy(b))


def test_multipliers_that_name_no_variable():
    model = _two_layers()
    with pytest.raises(ValueError, match=r"names no variable for keys \['bdy'\]"):
        model.compile(BlockwiseLR("sgd", {"bdy": 0.1}), "mse")
        model.fit(np.ones((4, 4)), np.zeros((4, 2)), verbose=0)
    with pytest.raises(ValueError, match=r"Received: body=-1"):
        BlockwiseLR("sgd", {"body": -1})


def test_patterns_and_default():
    model = _two_layers()
    optimizer = BlockwiseLR("sgd", {"b*/kernel": 0.5, "head": 2.0}, default=0.0)
    optimizer.build(model.trainable_variables)
    assert {v.path: optimizer.multiplier_for(v) for v in model.trainable_variables} == {
        "body/kernel": 0.5,
        "body/bias": 0.0,
        "head/kernel": 2.0,
        "head/bias": 2.0,
    }


@pytest.mark.skipif(
    BACKEND == "torch",
    reason="mixed_float16 loss scaling runs on TF and JAX; "
    "torch's CPU float16 conv kernels are too slow for a unit test",
)
def test_inside_a_loss_scale_optimizer():
    keras.config.set_dtype_policy("mixed_float16")
    model = _two_layers()
    model.compile(keras.optimizers.SGD(0.1), "mse")
    from keras_transfer.rates.optimizers import set_multipliers

    set_multipliers(model, {"body": 0.0})
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    body = as_numpy(model.get_layer("body").kernel).copy()
    model.fit(np.ones((8, 4)), np.zeros((8, 2)), epochs=1, batch_size=4, verbose=0)
    np.testing.assert_array_equal(as_numpy(model.get_layer("body").kernel), body)


def test_strict_keys_for_blocks_that_get_frozen_do_not_break_unfreezing():
    model = kt.transfer(tiny_backbone(), 2, strategy="fine_tune", preprocessing="tf")
    model.compile(BlockwiseLR(keras.optimizers.SGD(0.1), {"conv0": 0.1}), LOSS)
    model.fit(pixels(8), np.arange(8) % 2, epochs=1, batch_size=8, verbose=0)
    kt.unfreeze(model, blocks=1)  # conv0 is frozen now; its key names nothing
    assert model.optimizer.multipliers == {"conv0": 0.1}
    model.fit(pixels(8), np.arange(8) % 2, epochs=1, batch_size=8, verbose=0)
