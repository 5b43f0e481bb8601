"""The adaptive recipe's probe: logistic regression on standardised
features, folded back into a kernel and bias for the raw features."""

import numpy as np
import pytest

from keras_transfer.recipes import linear_probe
from keras_transfer.recipes.linear_probe import fit_probe, predict_probe
from tests.conftest import runs_once_in


def _features(rng, n=60, classes=3):
    labels = np.arange(n) % classes
    features = rng.normal(0, 1, (n, 8)).astype("float32") * 5 + 3
    features[:, 0] += labels * 4  # one informative column
    return features, labels


@runs_once_in("torch")  # NumPy and scikit-learn: no backend op
def test_the_folded_probe_predicts_as_the_fitted_regression_on_raw_features():
    from sklearn.linear_model import LogisticRegression

    features, labels = _features(np.random.default_rng(0))
    raw = features.copy()
    probe = linear_probe.fit_probe(features, labels, 3, seed=0)
    assert probe["C"] in linear_probe.PROBE_CS
    # Standardised in place, the matrix the regression was fitted on.
    z = (raw - raw.mean(0, dtype="float64")) / (raw.std(0, dtype="float64") + 1e-6)
    np.testing.assert_allclose(features, z, atol=1e-5)
    fitted = LogisticRegression(C=probe["C"], max_iter=3000).fit(features, labels)
    np.testing.assert_array_equal(linear_probe.predict_probe(raw, probe), fitted.predict(features))
    np.testing.assert_array_equal(
        linear_probe.predict_probe(features, probe, standardized=True), fitted.predict(features)
    )


@runs_once_in("torch")
def test_rows_that_weigh_nothing_change_nothing_and_nothing_is_copied():
    features, labels = _features(np.random.default_rng(2), n=90)
    features[:, 0] += labels * 16  # a clear class signal: the fits agree where it is
    counted = np.arange(90) % 5 != 0  # every class keeps rows
    alone = linear_probe.fit_probe(features[counted], labels[counted], 3, seed=0, c=0.3)
    table = features.copy()
    within = linear_probe.fit_probe(table, labels, 3, seed=0, c=0.3, weights=counted)
    np.testing.assert_allclose(within["kernel"], alone["kernel"], rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(within["bias"], alone["bias"], rtol=1e-3, atol=1e-4)
    # A refit of the same standardised matrix takes it as it is.
    before = table.copy()
    again = linear_probe.fit_probe(table, labels, 3, seed=0, c=0.3, standardized=within)
    np.testing.assert_array_equal(table, before)
    assert again["mean"] is within["mean"] and again["scale"] is within["scale"]
    agree = linear_probe.predict_probe(features, again) == linear_probe.predict_probe(
        features, within
    )
    assert agree.mean() >= 0.9  # a third more rows move the fit a little
    with pytest.raises(ValueError, match="float32.*Received: dtype=float64"):
        linear_probe.fit_probe(features.astype("float64"), labels, 3, seed=0)


@runs_once_in("torch")
def test_c_is_chosen_on_at_most_cv_images_and_a_missing_class_scores_low(monkeypatch):
    features, labels = _features(np.random.default_rng(1))
    monkeypatch.setattr(linear_probe, "CV_IMAGES", 30)
    groups = np.arange(len(labels))
    probe = linear_probe.fit_probe(features, labels, 4, seed=0, groups=groups)
    assert probe["C"] in linear_probe.PROBE_CS
    # Class 3 has no rows: it is never predicted.
    assert (probe["bias"][3] < -1e3) and 3 not in linear_probe.predict_probe(features, probe)


@runs_once_in("torch")
def test_a_balanced_probe_raises_the_rare_class_by_its_share():
    rng = np.random.default_rng(0)
    labels = (np.arange(200) % 5 == 0).astype("int64")  # 40 to 160
    features = (rng.normal(size=(200, 4)) + 0.8 * labels[:, None]).astype("float32")
    plain = fit_probe(features.copy(), labels, 2, seed=0, c=1.0)
    balanced = fit_probe(features.copy(), labels, 2, seed=0, c=1.0, balanced=True)
    np.testing.assert_allclose(balanced["kernel"], plain["kernel"])
    # Class 1's bias over class 0's rises by log(160 / 40).
    lift = np.diff(balanced["bias"]) - np.diff(plain["bias"])
    assert lift == pytest.approx(np.log(4.0))
    assert np.mean(predict_probe(features, balanced)) > np.mean(predict_probe(features, plain))


@runs_once_in("torch")
def test_the_fits_run_on_one_blas_thread_and_the_pools_are_put_back(monkeypatch):
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_info, threadpool_limits

    seen = []
    fit = LogisticRegression.fit

    def counting_fit(self, *args, **kwargs):
        seen.append({pool["num_threads"] for pool in threadpool_info()})
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(LogisticRegression, "fit", counting_fit)
    features, labels = _features(np.random.default_rng(0))
    # Two threads first (`make test` runs with one), so that the limit shows.
    with threadpool_limits(2):
        linear_probe.fit_probe(features, labels, 3, seed=0)
        after = {pool["num_threads"] for pool in threadpool_info()}
    assert len(seen) == 5 * len(linear_probe.PROBE_CS) + 1  # the folds' paths, then the fit
    assert all(threads == {1} for threads in seen)
    assert after == {2}


@runs_once_in("jax")
def test_without_scikit_learn_the_probe_is_fitted_in_keras(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "sklearn.linear_model", None)  # an ImportError
    features, labels = _features(np.random.default_rng(0))
    features[:, 0] += labels * 16  # a clear class signal
    raw = features.copy()
    probe = linear_probe.fit_probe(features, labels, 3, seed=0)
    assert probe["C"] is None  # no cross-validation without scikit-learn
    assert np.mean(predict_probe(raw, probe) == labels) >= 0.9
