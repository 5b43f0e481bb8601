import keras
import numpy as np
import pytest

from keras_transfer.layers import TemperatureScaling
from tests.layer_test_case import run_layer_test


def test_the_layer_harness(tmp_path):
    run_layer_test(
        TemperatureScaling,
        {"temperature": 1.7},
        np.random.default_rng(0).normal(size=(4, 3)).astype("float32"),
        (4, 3),
        tmp_path=tmp_path,
        expected_num_trainable_weights=0,
        float32_output=True,  # logits stay float32 under mixed precision
    )


def test_divides_the_logits_and_keeps_every_argmax():
    logits = np.random.default_rng(1).normal(size=(50, 5)).astype("float32") * 4
    for temperature in (0.2, 1.0, 3.5):
        out = keras.ops.convert_to_numpy(TemperatureScaling(temperature)(logits))
        np.testing.assert_allclose(out, logits / temperature, rtol=1e-6)
        np.testing.assert_array_equal(out.argmax(-1), logits.argmax(-1))
    half = keras.ops.convert_to_numpy(TemperatureScaling(2.0)(logits.astype("float16")))
    assert half.dtype == np.float32


@pytest.mark.parametrize("temperature", [0, -1.0, float("nan"), float("inf"), "2", True])
def test_a_temperature_must_be_a_finite_positive_number(temperature):
    with pytest.raises(ValueError, match="expected a finite float above 0. Received: temperature="):
        TemperatureScaling(temperature)
