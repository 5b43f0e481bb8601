import numpy as np
import pytest

from keras_transfer.heads.unknown import _parts
from keras_transfer.layers import UnknownScore
from tests.layer_test_case import run_layer_test

RNG = np.random.default_rng(0)
FEATURES = RNG.normal(size=(5, 6)).astype("float32")
LOGITS = RNG.normal(size=(5, 3)).astype("float32")


def test_the_layer_harness(tmp_path):
    run_layer_test(
        UnknownScore,
        {"threshold": -1.5, "rank": 4},
        [FEATURES, LOGITS],
        [(5, 3), (5,)],
        tmp_path=tmp_path,
        expected_num_trainable_weights=0,
        float32_output=True,
    )


def test_passes_the_logits_through_and_scores_as_fitted():
    layer = UnknownScore(0.0)
    layer([FEATURES, LOGITS])  # builds the statistics' weights
    means = RNG.normal(size=(3, 6)).astype("float32")
    basis = np.linalg.qr(RNG.normal(size=(6, 6)))[0].astype("float32")
    gains, floor = RNG.uniform(0.5, 2.0, 6).astype("float32"), np.float32(0.3)
    center, scale = np.array([2.0, 1.0], "float32"), np.array([0.5, 2.0], "float32")
    layer.set_weights([means, basis, gains, floor, center, scale])
    logits, score = (np.asarray(x) for x in layer([FEATURES, LOGITS]))
    np.testing.assert_array_equal(logits, LOGITS)
    parts = _parts((means, basis, gains, floor), FEATURES, LOGITS)
    expected = -(parts[:, 0] - 2.0) / 0.5 + (parts[:, 1] - 1.0) / 2.0
    np.testing.assert_allclose(score, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("threshold", [float("nan"), float("inf"), "1", True, None])
def test_a_threshold_must_be_a_finite_number_and_a_rank_positive(threshold):
    with pytest.raises(ValueError, match="expected a finite float. Received: threshold="):
        UnknownScore(threshold)
    with pytest.raises(ValueError, match="Received: rank=0"):
        UnknownScore(0.0, rank=0)
