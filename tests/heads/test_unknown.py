import keras
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

import keras_transfer as ktr
from keras_transfer.heads.unknown import MIN_IMAGES

RNG = np.random.default_rng(0)
DIM = 6
CENTERS = 4.0 * np.eye(DIM)[:3]  # three classes, along three axes


def _images(n, centers, seed):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(centers)
    return (centers[labels] + rng.normal(size=(n, DIM))).astype("float32"), labels


def _classifier():
    """Features are the input; the `head` maps them to 3 logits, as
    transfer() builds a model around its `head`."""
    inputs = keras.Input((DIM,))
    head = keras.Sequential([keras.Input((DIM,)), keras.layers.Dense(3)], name="head")
    head.layers[-1].set_weights([CENTERS.T.astype("float32"), np.zeros(3, "float32")])
    return keras.Model(inputs, head(inputs))


def test_fits_a_threshold_that_accepts_the_classes_and_rejects_others(tmp_path):
    model = _classifier()
    train, held, known = _images(300, CENTERS, 1), _images(200, CENTERS, 2), _images(90, CENTERS, 3)
    scored = ktr.fit_unknown(model, train[0], held[0], train[1], held[1])
    assert scored.unknown["held_out_accepted"] == pytest.approx(0.95, abs=0.01)
    # The logits are the model's; the view adds one score per image.
    others = _images(90, -CENTERS, 4)[0]  # none of the classes
    x = np.concatenate([known[0], others])
    np.testing.assert_allclose(scored.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)
    view = ktr.unknown_output(scored)
    out = view.predict(x, verbose=0)
    assert sorted(out) == ["logits", "unknown_score"] and out["unknown_score"].shape == (180,)
    assert roc_auc_score(np.arange(180) < 90, out["unknown_score"]) > 0.95
    threshold = scored.get_layer("unknown_score").threshold
    assert threshold == scored.unknown["threshold"]
    assert np.mean(out["unknown_score"][90:] < threshold) > 0.8
    assert np.mean(out["unknown_score"][:90] >= threshold) > 0.85
    # Saved inside the model: the same scores and threshold after loading.
    scored.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    again = ktr.unknown_output(loaded).predict(x, verbose=0)
    np.testing.assert_allclose(again["unknown_score"], out["unknown_score"], rtol=1e-4, atol=1e-4)
    assert loaded.get_layer("unknown_score").threshold == threshold
    # Calibrated after: the softmax's view names its probabilities.
    calibrated = ktr.calibrate(scored, held[0], held[1])
    probabilities = keras.layers.Softmax(name="probabilities")(calibrated.output)
    view = ktr.unknown_output(keras.Model(calibrated.input, probabilities))
    assert sorted(view.output) == ["probabilities", "unknown_score"]


def test_too_few_held_out_images_give_no_score_and_say_why():
    model = _classifier()
    train, held = _images(60, CENTERS, 1), _images(MIN_IMAGES - 1, CENTERS, 2)
    same = ktr.fit_unknown(model, train[0], held[0], train[1], held[1])
    assert same is model and same.unknown["threshold"] is None
    assert "fewer than" in same.unknown["skipped"] and ktr.unknown_output(same) is None


def test_refuses_a_softmax_a_second_score_a_bad_share_and_a_missing_class():
    model = _classifier()
    train, held = _images(60, CENTERS, 1), _images(30, CENTERS, 2)
    softmax = keras.Model(model.input, keras.layers.Softmax()(model.output))
    with pytest.raises(ValueError, match="before its softmax"):
        ktr.fit_unknown(softmax, train[0], held[0], train[1], held[1])
    scored = ktr.fit_unknown(model, train[0], held[0], train[1], held[1])
    with pytest.raises(ValueError, match="already has an unknown score"):
        ktr.fit_unknown(scored, train[0], held[0], train[1], held[1])
    with pytest.raises(ValueError, match=r"Received: accept=1\.0"):
        ktr.fit_unknown(model, train[0], held[0], train[1], held[1], accept=1.0)
    with pytest.raises(ValueError, match=r"none of class \[2\]"):
        ktr.fit_unknown(model, train[0][train[1] < 2], held[0], train[1][train[1] < 2], held[1])
