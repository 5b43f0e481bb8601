"""The schedules: one cycle, and the range test's exponential rate."""

import keras
import numpy as np
import pytest

import keras_transfer as kt
from keras_transfer.recipes.schedules import ExponentialRange
from tests.conftest import as_numpy


def test_one_cycle_shape():
    schedule = kt.schedules.OneCycle(1.0, total_steps=100, pct_start=0.25, div=10, div_final=100)
    values = [float(as_numpy(schedule(s))) for s in (0, 25, 100, 200)]
    assert values == pytest.approx([0.1, 1.0, 0.01, 0.01], rel=1e-5)
    restored = kt.schedules.OneCycle.from_config(schedule.get_config())
    assert float(as_numpy(restored(60))) == pytest.approx(float(as_numpy(schedule(60))))
    with pytest.raises(ValueError, match="Received: total_steps=0"):
        kt.schedules.OneCycle(1.0, total_steps=0)


def test_the_range_tests_rate_runs_from_start_to_end_and_saves():
    rate = ExponentialRange(1e-6, 1.0, 7)
    values = [float(as_numpy(rate(step))) for step in range(7)]
    np.testing.assert_allclose(values, np.geomspace(1e-6, 1.0, 7), rtol=1e-4)
    copy = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(rate))
    assert isinstance(copy, ExponentialRange) and copy.get_config() == rate.get_config()
