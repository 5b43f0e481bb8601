"""The adaptive recipe's probe: logistic regression on standardised
features, folded back into a kernel and bias for the raw features."""

import numpy as np

from keras_transfer import linear_probe
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
    probe = linear_probe.fit_probe(features, labels, 3, seed=0)
    assert probe["C"] in linear_probe.PROBE_CS
    z = (features - features.mean(0, dtype="float64")) / (features.std(0, dtype="float64") + 1e-6)
    fitted = LogisticRegression(C=probe["C"], max_iter=3000).fit(z, labels)
    np.testing.assert_array_equal(linear_probe.predict_probe(features, probe), fitted.predict(z))


@runs_once_in("torch")
def test_c_is_chosen_on_at_most_cv_images_and_a_missing_class_scores_low(monkeypatch):
    features, labels = _features(np.random.default_rng(1))
    monkeypatch.setattr(linear_probe, "CV_IMAGES", 30)
    groups = np.arange(len(labels))
    probe = linear_probe.fit_probe(features, labels, 4, seed=0, groups=groups)
    assert probe["C"] in linear_probe.PROBE_CS
    # Class 3 has no rows: it is never predicted.
    assert (probe["bias"][3] < -1e3) and 3 not in linear_probe.predict_probe(features, probe)
