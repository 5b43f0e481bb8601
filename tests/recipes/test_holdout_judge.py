"""The adaptive recipe's judge: the held-out slice scored each epoch, the
best epoch kept, and the sign test."""

import numpy as np
import pytest

import keras_transfer as ktr
from keras_transfer.recipes import holdout_judge
from tests.conftest import pixels, runs_once_in, tiny_backbone

X = pixels(12)
Y = np.arange(12) % 2


@runs_once_in("torch")
def test_the_sign_test_counts_disagreements_only():
    assert holdout_judge.sign_test(4, 0) == pytest.approx(1 / 16)  # four coin flips, all heads
    assert holdout_judge.sign_test(1, 0) == 0.5  # one image is a coin flip
    assert holdout_judge.sign_test(0, 0) == 1.0
    assert holdout_judge.sign_test(5, 1) == pytest.approx(7 / 64)


@runs_once_in("torch")
def test_with_enough_images_a_class_fine_tuning_need_only_be_ahead():
    assert holdout_judge.FINE_TUNE_IMAGES == 200
    # Few images: fine-tuning must be ahead by more than a coin would.
    assert holdout_judge.verdict(26, 22, 199)[0] == "probe"
    assert holdout_judge.verdict(12, 3, 199)[0] == "fine_tuned"  # p = 0.018
    kept, test, rule = holdout_judge.verdict(26, 22, 200)
    assert kept == "fine_tuned" and test["p_value"] > holdout_judge.KEEP_P
    assert "kept when it is ahead on the slice" in rule and "(200)" in rule
    assert holdout_judge.verdict(5, 5, 300)[0] == "probe"  # a tie
    assert holdout_judge.verdict(22, 26, 300)[0] == "probe"  # the probe ahead


def test_keep_best_never_keeps_an_epoch_with_non_finite_weights():
    model = ktr.transfer(tiny_backbone(top=False), 2, preprocessing="unit")
    keep = holdout_judge.KeepBest(
        X[:4], Y[:4], 4, probe_right=np.zeros(4, bool), steps_per_epoch=1, fair=1, planned=1
    )
    keep.set_model(model)
    weights = model.get_weights()
    broken = [np.full_like(w, np.nan) if w.dtype.kind == "f" else w for w in weights]
    model.set_weights(broken)
    keep.on_epoch_end(0)
    assert keep.best_weights is None and keep.scores == [0.0]


@runs_once_in("torch")
def test_weighted_the_judge_scores_the_balanced_accuracy():
    # Three of class 0 right, the one of class 1 wrong: 0.75 of the images,
    # a balanced accuracy of 0.5 with each class weighted alike.
    right = np.array([True, True, True, False])
    plain = holdout_judge.KeepBest(X[:4], Y[:4], 4, right, 1, 1, 1)
    weighted = holdout_judge.KeepBest(X[:4], Y[:4], 4, right, 1, 1, 1, weights=[2 / 3] * 3 + [2])
    assert plain.probe_score == 0.75 and weighted.probe_score == pytest.approx(0.5)


@runs_once_in("torch")
def test_the_slice_is_stratified_and_a_single_image_class_is_trained_on():
    y = np.array([0] * 10 + [1] * 5 + [2])
    fit, held, why = holdout_judge.split_holdout(y, 0.2, np.random.default_rng(0))
    assert np.bincount(y[held], minlength=3).tolist() == [2, 1, 0]
    assert sorted(fit.tolist() + held.tolist()) == list(range(16))
    assert "single image of class(es) [2]" in why
    fit, held, why = holdout_judge.split_holdout(np.array([0, 1]), 0.2, np.random.default_rng(0))
    assert fit.tolist() == [0, 1] and not len(held) and "nothing can be held out" in why
