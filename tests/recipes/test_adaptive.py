"""`fine_tune`'s adaptive default: a probe, fine-tuning from it, and a
choice made on a held-out slice of the training data only."""

import keras
import numpy as np
import pytest

import keras_transfer as ktr
from keras_transfer.recipes import adaptive
from keras_transfer.recipes.augmentation import describe, photo_augmentation
from tests.conftest import as_numpy, pixels, runs_once_in, tiny_backbone

RNG = np.random.default_rng(0)
Y = np.arange(40) % 2
# Class 1 is redder: learnable, but not perfectly by a random backbone.
X = pixels(40, seed=1) * 0.8
X[Y == 1, ..., 0] += 50.0


@pytest.fixture(autouse=True)
def _short_recipe(monkeypatch):
    # Three fine-tuning epochs, not ten: the decisions under test are the same.
    monkeypatch.setattr(adaptive, "MAX_EPOCHS", 3)


def _model(flip=False):
    keras.utils.set_random_seed(0)  # before RandomFlip draws its seed
    augmentation = [keras.layers.RandomFlip("horizontal")] if flip else None
    return ktr.transfer(tiny_backbone(), 2, preprocessing="tf", augmentation=augmentation)


def _record(history):
    record = dict(history.decision)
    record.pop("seconds")
    return record


class _Snapshots(keras.callbacks.Callback):
    """Every weight at the end of each epoch."""

    def __init__(self):
        super().__init__()
        self.weights = []

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append([np.array(w) for w in self.model.get_weights()])


def test_validation_data_is_never_read_and_a_rerun_repeats_the_decision():
    # Two runs with the same seed, the second with shuffled validation
    # labels: the same decision record and the same weights.
    shuffled = np.random.default_rng(1).permutation(Y)
    runs = []
    for labels in (Y, shuffled):
        model = _model(flip=True)
        history = ktr.fine_tune(model, (X, Y), validation_data=(X, labels), seed=3, verbose=0)
        runs.append((history, [np.array(w) for w in model.get_weights()]))
    (history, weights), (again, weights_again) = runs
    assert _record(again) == _record(history)
    for a, b in zip(weights, weights_again):
        np.testing.assert_array_equal(a, b)

    # The decision record is in the History.
    decision = history.decision
    retrained = decision["kept"] == "fine_tuned"  # then trained again on all 40 images
    assert [phase["name"] for phase in history.phases] == ["probe", "fine_tune"] + [
        "retrain"
    ] * retrained
    assert decision["kept"] in ("probe", "fine_tuned") and decision["reason"]
    assert decision["holdout_images"] == 8 and decision["train_images"] == 32
    assert decision["augmented_views"] == 2  # drawn with the model's own RandomFlip
    assert len(decision["fine_tune_holdout_curve"]) == decision["fine_tune_epochs"]
    ran = decision["fine_tune_epochs"]
    assert history.history["holdout_accuracy"][:ran] == decision["fine_tune_holdout_curve"]
    assert len(history.history["val_accuracy"]) == len(history.epoch) >= ran
    assert set(decision["sign_test"]) == {"gained", "lost", "p_value"}
    assert "fewer than 200 training images (20)" in decision["reason"]  # the rule applied
    assert set(decision["seconds"]) == {"probe", "fine_tune", "retrain", "total"}
    # A temperature fitted on the slice, for ktr.calibrate.
    assert decision["calibration"]["images"] == 8 and decision["calibration"]["temperature"] > 0
    calibrated = ktr.calibrate(model, temperature=decision["calibration"]["temperature"])
    assert calibrated.layers[-1].temperature == decision["calibration"]["temperature"]


def _biased_probe(monkeypatch):
    # A probe pushed towards class 0 scores chance on the slice; fine-tuning
    # from it moves the bias back within a few steps and is kept.
    fit_probe = adaptive.fit_probe

    def biased_probe(*args, **kwargs):
        probe = fit_probe(*args, **kwargs)
        probe["kernel"] = probe["kernel"] * 0.01
        probe["bias"] = probe["bias"] * 0.01 + np.array([0.05, 0.0])
        return probe

    monkeypatch.setattr(adaptive, "fit_probe", biased_probe)
    monkeypatch.setattr(adaptive, "PEAK_LR", 0.1)  # enough for the 12 steps of this test
    # Every epoch may run: keep-best is under test, not the early stop.
    monkeypatch.setattr(adaptive, "FAIR_STEPS", 10**6)


def test_keep_best_restores_the_best_epochs_weights(monkeypatch):
    _biased_probe(monkeypatch)
    monkeypatch.setattr(adaptive, "RETRAIN", False)  # the slice's model is kept as it is
    model = _model()
    snapshots = _Snapshots()
    history = ktr.fine_tune(model, (X, Y), seed=0, batch_size=8, callbacks=[snapshots], verbose=0)
    decision = history.decision
    assert decision["kept"] == "fine_tuned", decision
    curve = decision["fine_tune_holdout_curve"]
    assert decision["fine_tune_best_epoch"] == int(np.argmax(curve))
    assert decision["fine_tune_holdout_accuracy"] == max(curve) > 0.5
    for kept, best in zip(model.get_weights(), snapshots.weights[int(np.argmax(curve))]):
        np.testing.assert_array_equal(kept, best)
    assert decision["retrained_on_all"] is None


def test_fine_tuning_kept_is_trained_again_on_every_image_up_to_the_chosen_epoch(monkeypatch):
    _biased_probe(monkeypatch)
    model = _model()
    snapshots = _Snapshots()
    history = ktr.fine_tune(model, (X, Y), seed=0, batch_size=8, callbacks=[snapshots], verbose=0)
    decision = history.decision
    assert decision["kept"] == "fine_tuned", decision
    ran, chosen = decision["fine_tune_epochs"], decision["fine_tune_best_epoch"] + 1
    retrained = decision["retrained_on_all"]
    assert retrained["images"] == 40 and retrained["epochs"] == chosen and not retrained["failed"]
    assert [phase["name"] for phase in history.phases] == ["probe", "fine_tune", "retrain"]
    assert history.phases[2]["first_epoch"] == ran and history.phases[2]["epochs"] == chosen
    # One History: the slice's epochs, then the retraining's, which the slice did not score.
    assert history.epoch == list(range(ran + chosen))
    curve = history.history["holdout_accuracy"]
    assert curve == decision["fine_tune_holdout_curve"] + [None] * chosen
    # The model is the retraining's last epoch (5 steps an epoch on 40 images, not 4 on 32).
    assert len(snapshots.weights) == ran + chosen
    for kept, last in zip(model.get_weights(), snapshots.weights[-1]):
        np.testing.assert_array_equal(kept, last)
    assert model.optimizer.iterations == 5 * chosen


@pytest.mark.parametrize(
    "floor, epochs",
    [pytest.param(1, 6, marks=runs_once_in("torch")), (28, 7)],
    ids=["share", "floor"],
)
def test_fine_tuning_is_judged_only_after_its_fair_run(monkeypatch, floor, epochs):
    # Fine-tuning that cannot move (a rate of 1e-12) never beats the probe.
    # 8 epochs of 4 steps: the warm-up ends at step 10 and 3/4 of the
    # schedule is 24 steps, so the probe may stop it after epoch 6, not
    # before; a floor of 28 steps holds it to epoch 7.
    monkeypatch.setattr(adaptive, "MAX_EPOCHS", 8)
    monkeypatch.setattr(adaptive, "PEAK_LR", 1e-12)
    monkeypatch.setattr(adaptive, "FAIR_STEPS", floor)
    history = ktr.fine_tune(_model(), (X, Y), seed=0, batch_size=8, verbose=0)
    decision = history.decision
    assert decision["fine_tune_steps_per_epoch"] == 4
    assert decision["fine_tune_fair_steps"] == max(24, floor)
    assert decision["fine_tune_epochs"] == epochs < decision["fine_tune_planned_epochs"]
    assert epochs * 4 > adaptive.WARMUP * 32  # past the warm-up
    assert decision["fine_tune_stopped"].startswith(f"stopped after epoch {epochs}: ")
    assert f"past its fair run of {max(24, floor)}" in decision["fine_tune_stopped"]
    assert decision["kept"] == "probe"


@runs_once_in("torch")  # the decision logic; the backends' runs are checked above
def test_the_probe_is_kept_when_fine_tuning_does_not_beat_it(monkeypatch, tmp_path):
    # At a rate of 1e-12 fine-tuning cannot move: it ties the probe, and a
    # tie keeps the probe, refitted on every training image, backbone frozen.
    monkeypatch.setattr(adaptive, "PEAK_LR", 1e-12)
    model = _model()
    backbone = model.get_layer("backbone")
    before = [np.array(w) for w in backbone.get_weights()]
    history = ktr.fine_tune(model, (X, Y), seed=0, verbose=0)
    assert history.decision["kept"] == "probe", history.decision
    # Three epochs of one step are shorter than the fair run: all run.
    assert history.decision["fine_tune_epochs"] == 3 == history.decision["fine_tune_planned_epochs"]
    assert history.decision["fine_tune_stopped"] == "ran its 3 planned epochs"
    for a, b in zip(backbone.get_weights(), before):
        np.testing.assert_array_equal(a, b)
    assert not backbone.trainable_weights
    # The refitted probe is the model's head: the model scores like it.
    assert model.evaluate(X, Y, verbose=0)[1] > 0.7
    path = tmp_path / "probe.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(
        as_numpy(reloaded.predict(X, verbose=0)), as_numpy(model.predict(X, verbose=0)), atol=1e-5
    )


def test_bad_input_says_what_was_received():
    with pytest.raises(ValueError, match="two classes.*Received: labels of one class"):
        ktr.fine_tune(_model(), (X, np.zeros(40)), verbose=0)
    with pytest.raises(ValueError, match=r"Received: the label at index 0 is 0.5"):
        ktr.fine_tune(_model(), (X, Y + 0.5), verbose=0)
    with pytest.raises(ValueError, match=r"`train` must be class indices in \[0, 2\)"):
        ktr.fine_tune(_model(), (X, Y + 1), verbose=0)
    with pytest.raises(ValueError, match="Received: holdout=1.5"):
        ktr.fine_tune(_model(), (X, Y), holdout=1.5, verbose=0)
    with pytest.raises(ValueError, match="adaptive=False.*Received: epochs"):
        ktr.fine_tune(_model(), (X, Y), adaptive=True, epochs=2)
    with pytest.raises(ValueError, match="Received: adaptive='yes'"):
        ktr.fine_tune(_model(), (X, Y), adaptive="yes")
    head = keras.Sequential([keras.layers.Dense(4), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="one Dense layer.*Received: a head with weighted"):
        ktr.fine_tune(ktr.transfer(tiny_backbone(), 2, head=head), (X, Y), verbose=0)


@runs_once_in("torch")
def test_a_singleton_class_still_leaves_a_held_out_comparison():
    x, y = X[:6], np.array([0, 0, 0, 0, 0, 1])  # class 1 has one image
    with pytest.warns(UserWarning, match=r"a single image of class\(es\) \[1\]"):
        history = ktr.fine_tune(_model(), (x, y), seed=0, verbose=0)
    decision = history.decision
    assert decision["holdout_images"] == 1 and decision["sign_test"] is not None
    assert decision["fine_tune_epochs"] >= 1
    assert "single image of class(es) [1]" in decision["reason"]


@runs_once_in("torch")
def test_with_no_class_to_hold_out_from_the_probe_is_kept():
    x, y = X[:2], np.array([0, 1])
    with pytest.warns(UserWarning, match=r"fewer than 2 images of every class"):
        history = ktr.fine_tune(_model(), (x, y), seed=0, verbose=0)
    decision = history.decision
    assert decision["holdout_images"] == 0 and decision["kept"] == "probe"
    assert decision["fine_tune_epochs"] == 0 and "keeps the probe" in decision["reason"]


def test_the_default_augmentation_is_recorded_and_can_be_switched_off():
    model = _model()
    history = ktr.fine_tune(model, (X, Y), seed=3, verbose=0)
    decision = history.decision
    assert decision["augmentation"] == describe(photo_augmentation())
    assert decision["augmented_views"] == 2
    assert "augmentation" not in [layer.name for layer in model.layers]  # in the pipeline
    off = ktr.fine_tune(_model(), (X, Y), seed=3, verbose=0, augmentation=None)
    assert off.decision["augmentation"] is None and off.decision["augmented_views"] == 0
    assert off.decision["augmented_views_why"] == "no augmentation: no views"
    own = ktr.fine_tune(_model(flip=True), (X, Y), seed=3, verbose=0, flip=False)
    assert own.decision["augmentation"] == "the model's own augmentation part"
    with pytest.raises(TypeError, match="Received: augmentation='crop'"):
        ktr.fine_tune(_model(), (X, Y), augmentation="crop")
    with pytest.raises(ValueError, match="the fixed recipe trains with the model's own"):
        ktr.fine_tune(_model(), (X, Y), epochs=1, flip=False)


def test_the_probes_views_follow_the_datas_size(monkeypatch):
    assert [adaptive.probe_views(n) for n in (1, 500, 501, 1000, 1001, 3000)] == [2, 2, 1, 1, 0, 0]
    # 40 images with room for one view each: the second view's pass is skipped.
    monkeypatch.setattr(adaptive, "VIEW_IMAGES", 40)
    decision = ktr.fine_tune(_model(), (X, Y), seed=3, verbose=0).decision
    assert decision["augmented_views"] == 1
    assert "40 // 40 images = 1 (the views' passes skipped" in decision["augmented_views_why"]


def test_labels_and_losses_that_would_fail_inside_the_graph_are_refused_first():
    bad = (X[:4], np.array([0, 1, 2, 0]))  # label 2 on a 2-class model
    for adaptive_recipe in (True, False):
        with pytest.raises(
            ValueError, match=r"`validation_data` must be class indices in \[0, 2\)"
        ):
            ktr.fine_tune(_model(), (X, Y), bad, adaptive=adaptive_recipe, verbose=0)
    model = _model()
    model.compile("adam", loss="mse")
    with pytest.raises(ValueError, match="does not take class indices.*Received: loss='mse'"):
        ktr.fine_tune(model, (X, Y), verbose=0)
    model.compile("adam", loss=keras.losses.CategoricalCrossentropy())
    with pytest.raises(ValueError, match="Received: loss='CategoricalCrossentropy'"):
        ktr.fine_tune(model, (X, Y), epochs=1, verbose=0)


@runs_once_in("torch")  # the rule; the pipeline's runs are checked above
def test_the_default_augmentation_stops_past_augment_images(monkeypatch):
    monkeypatch.setattr(adaptive, "AUGMENT_IMAGES", 39)
    decision = ktr.fine_tune(_model(), (X, Y), seed=3, verbose=0).decision
    assert decision["augmentation"] is None and decision["augmented_views"] == 0
    assert "no augmentation on 40 images (more than 39" in decision["augmented_views_why"]


@runs_once_in("jax")
def test_unequal_classes_count_alike_in_the_probe_fine_tuning_and_judge():
    y = (np.arange(40) % 5 == 0).astype("int64")  # 32 to 8: 4 times
    runs = {}
    for balance in ("auto", False):
        runs[balance] = ktr.fine_tune(_model(), (X, y), seed=0, balance=balance, verbose=0)
    on, off = (runs[b].decision["balance"] for b in ("auto", False))
    assert on["used"] and on["class_weights"] == [0.625, 2.5]
    assert on["why"].startswith("balanced: the largest class has 4.0 times")
    assert off == {"used": False, "why": "off: balance=False", "class_weights": None}
    # The weighted loss and the weighted probe differ from the plain ones.
    assert runs["auto"].history["loss"][0] != pytest.approx(runs[False].history["loss"][0])
    # The held-out comparison weighs each class alike, and says so.
    assert "held-out slice (each class alike)" in runs["auto"].decision["reason"]
    assert "each class alike" not in runs[False].decision["reason"]
