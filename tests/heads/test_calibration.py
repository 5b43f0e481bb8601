"""Temperature scaling and the expected calibration error, on logits whose
miscalibration is known."""

import keras
import numpy as np
import pytest

from keras_transfer.heads import calibration
from keras_transfer.heads.calibration import (
    calibrate,
    calibration_report,
    expected_calibration_error,
    fit_temperature,
    reliability,
)

RNG = np.random.default_rng(0)
# Logits drawn so that softmax(LOGITS) is calibrated: the label is sampled
# from it.
LOGITS = RNG.normal(scale=2.0, size=(3000, 4))
_P = np.exp(LOGITS) / np.exp(LOGITS).sum(-1, keepdims=True)
LABELS = np.array([RNG.choice(4, p=row) for row in _P])


def test_a_calibrated_model_keeps_temperature_one_and_a_sharpened_one_is_undone():
    assert fit_temperature(LOGITS, LABELS) == pytest.approx(1.0, abs=0.1)
    assert fit_temperature(4.0 * LOGITS, LABELS) == pytest.approx(4.0, rel=0.1)
    assert fit_temperature(0.5 * LOGITS, LABELS) == pytest.approx(0.5, rel=0.1)


def test_the_report_cross_fits_and_lowers_the_error_of_an_over_confident_model():
    record = calibration_report(3.0 * LOGITS, LABELS)
    assert record["ece_before"] > 0.1 and record["ece_after"] < 0.03
    assert record["ece_after_cross_fitted"] < 0.03
    assert record["nll_after"] < record["nll_before"]
    assert record["temperature"] == pytest.approx(3.0, rel=0.1)
    assert record["images"] == 3000 and record["bins"] == calibration.BINS


def test_too_few_images_leave_the_temperature_at_one():
    record = calibration_report(LOGITS[:5], LABELS[:5])
    assert record["temperature"] == 1.0 and "fewer than" in record["skipped"]
    assert record["ece_after"] == record["ece_after_cross_fitted"] == record["ece_before"]


def test_the_expected_calibration_error_and_its_bins():
    p = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.3, 0.7]])
    assert expected_calibration_error(p, [0, 1, 0, 1]) == pytest.approx(0.4)
    confidence, accuracy, share = reliability(p, [0, 1, 0, 1], bins=2)
    np.testing.assert_allclose(share, [0.0, 1.0])
    assert np.isnan(confidence[0]) and accuracy[1] == pytest.approx(0.75)
    # Always right at full confidence: no error.
    assert expected_calibration_error(np.eye(3), [0, 1, 2]) == 0.0


def test_calibrate_appends_the_temperature_and_keeps_the_answers():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(4, use_bias=False)(inputs))
    model.layers[-1].set_weights([3.0 * np.eye(4, dtype="float32")])  # 3x too sharp
    calibrated = calibrate(model, LOGITS.astype("float32"), LABELS)
    assert calibrated.calibration["temperature"] == pytest.approx(3.0, rel=0.1)
    x = LOGITS[:50].astype("float32")
    np.testing.assert_array_equal(
        calibrated.predict(x, verbose=0).argmax(-1), model.predict(x, verbose=0).argmax(-1)
    )
    # Batches of (images, labels), as a dataset gives them: the same fit.
    batches = [
        (LOGITS[i : i + 500].astype("float32"), LABELS[i : i + 500]) for i in range(0, 3000, 500)
    ]
    again = calibrate(model, batches)
    assert again.calibration["temperature"] == pytest.approx(calibrated.calibration["temperature"])
    with pytest.raises(ValueError, match="one row per image"):
        fit_temperature(LOGITS[:10], LABELS[:9])
    # A temperature fitted already (the adaptive recipe's), or images: one of the two.
    assert calibrate(model, temperature=2.0).calibration == {"temperature": 2.0, "given": True}
    with pytest.raises(ValueError, match="Received: x=images, temperature=2.0"):
        calibrate(model, LOGITS, LABELS, temperature=2.0)
