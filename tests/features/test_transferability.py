"""The transferability scores against their papers' definitions, each
computed here another way (directly, and more slowly)."""

import numpy as np
import pytest
from scipy.optimize import minimize

from keras_transfer.features import transferability as scores

RNG = np.random.default_rng(0)
LABELS = np.arange(60) % 3
FEATURES = RNG.normal(size=(60, 12))
FEATURES[:, 0] += LABELS  # class evidence in one dimension


def _evidence(features, target, alpha, beta):
    """Bayesian linear regression's log evidence, with the D x D matrices."""
    n, d = features.shape
    a = alpha * np.eye(d) + beta * features.T @ features
    m = beta * np.linalg.solve(a, features.T @ target)
    return (
        d / 2 * np.log(alpha)
        + n / 2 * np.log(beta)
        - np.linalg.slogdet(a)[1] / 2
        - beta / 2 * np.sum((features @ m - target) ** 2)
        - alpha / 2 * m @ m
        - n / 2 * np.log(2 * np.pi)
    ) / n


@pytest.mark.parametrize("shape", [(60, 12), (24, 16)])
def test_logme_is_the_maximised_evidence(shape):
    features = RNG.normal(size=shape)
    labels = np.arange(shape[0]) % 3
    features[:, 0] += labels
    direct = []
    for label in range(3):
        target = (labels == label).astype("float64")
        results = [  # from several starts: the prior precision may be in the thousands
            minimize(
                lambda p, target=target: -_evidence(features, target, *np.exp(p)),
                start,
                method="Nelder-Mead",
                options={"xatol": 1e-10, "fatol": 1e-13, "maxiter": 4000},
            )
            for start in ([0.0, 0.0], [4.0, 1.0], [8.0, 1.0])
        ]
        direct.append(-min(result.fun for result in results))
    assert scores.logme(features, labels) == pytest.approx(np.mean(direct), abs=1e-6)


def test_h_score_is_the_between_class_variance_in_whitened_units():
    centred = FEATURES - FEATURES.mean(0)
    # Whitened features: their per-class means' total variance is the score.
    values, vectors = np.linalg.eigh(centred.T @ centred / len(centred))
    white = centred @ vectors / np.sqrt(values)
    means = np.stack([white[LABELS == c].mean(0) for c in LABELS])
    expected = np.sum(means**2) / len(white)
    assert scores.h_score(FEATURES, LABELS, shrinkage=False) == pytest.approx(expected)

    from sklearn.covariance import LedoitWolf

    wide = np.abs(RNG.normal(size=(30, 80)))  # fewer images than dimensions, as usual
    wide[:, 0] += np.arange(30) % 3
    for features, labels in [(FEATURES, LABELS), (wide, np.arange(30) % 3)]:
        centred = features - features.mean(0)
        shrunk = LedoitWolf(assume_centered=True).fit(centred)
        means = np.stack([centred[labels == c].mean(0) for c in labels])
        between = np.cov(means.T, bias=True)
        shrunk_between = (1 - shrunk.shrinkage_) * between
        expected = np.trace(np.linalg.inv(shrunk.covariance_) @ shrunk_between)
        assert scores.h_score(features, labels) == pytest.approx(expected)


def test_transrate_is_the_coding_rate_minus_each_classs():
    z = FEATURES - FEATURES.mean(0)
    z = z / np.sqrt(np.mean(z**2))

    def rate(part, eps=1e-4):  # with the D x D matrix, whatever the row count
        return np.linalg.slogdet(np.eye(12) + part.T @ part / (len(part) * eps))[1] / 2

    expected = rate(z) - sum(np.mean(LABELS == c) * rate(z[LABELS == c]) for c in range(3))
    assert scores.transrate(FEATURES, LABELS) == pytest.approx(expected)


def test_leep_and_nce_from_their_definitions():
    p = RNG.dirichlet(np.ones(5), size=60)  # a source classifier's outputs, 5 classes
    n = len(p)
    joint = np.zeros((3, 5))
    for i in range(n):
        joint[LABELS[i]] += p[i] / n
    expected = np.mean(
        [
            np.log(sum(joint[LABELS[i], z] / joint[:, z].sum() * p[i, z] for z in range(5)))
            for i in range(n)
        ]
    )
    assert scores.leep(p, LABELS) == pytest.approx(expected)

    z = p.argmax(1)
    entropy = 0.0
    for source in np.unique(z):
        share = np.mean(z == source)
        counts = np.bincount(LABELS[z == source], minlength=3) / np.sum(z == source)
        entropy -= share * np.sum(counts[counts > 0] * np.log(counts[counts > 0]))
    assert scores.nce(p, LABELS) == pytest.approx(-entropy)
    assert scores.nce(LABELS, LABELS) == 0.0  # the source labels say it all


def _leave_one_out(features, labels, alphas):
    """Ridge classifiers (scikit-learn, intercept fitted) without each image
    in turn, on the features standardised once: the best accuracy."""
    from sklearn.linear_model import Ridge

    z = (features - features.mean(0)) / features.std(0)
    targets = np.eye(labels.max() + 1)[labels]
    best = 0.0
    for alpha in alphas:
        right = 0
        for i in range(len(z)):
            rest = np.arange(len(z)) != i
            fitted = Ridge(alpha=alpha).fit(z[rest], targets[rest])
            right += int(fitted.predict(z[i : i + 1]).argmax() == labels[i])
        best = max(best, right / len(z))
    return best


def test_probe_accuracy_and_the_ordering_of_every_score():
    """The closed form against leave-one-out done by hand, with more images
    than features and with fewer (where a fit that interpolates must not
    give an image's own label back: random labels score near chance)."""
    alphas = (0.1, 10.0, 1000.0)
    assert scores.probe_accuracy(FEATURES, LABELS, alphas=alphas) == pytest.approx(
        _leave_one_out(FEATURES, LABELS, alphas)
    )
    wide, random_labels = RNG.normal(size=(30, 50)), np.arange(30) % 3
    RNG.shuffle(random_labels)
    chance = scores.probe_accuracy(wide, random_labels, alphas=alphas)
    assert chance == pytest.approx(_leave_one_out(wide, random_labels, alphas))
    assert chance < 0.6
    # Features that carry the labels score above noise, on every score.
    informative = RNG.normal(size=(90, 8))
    labels = np.arange(90) % 3
    informative[:, 0] += 3.0 * labels
    noise = RNG.normal(size=informative.shape)
    for name, score in scores.SCORES.items():
        assert score(informative, labels) > score(noise, labels), name


def test_bad_input_says_what_was_received():
    with pytest.raises(ValueError, match="at least two classes of at least two images"):
        scores.logme(FEATURES[:5], np.zeros(5, "int64"))
    with pytest.raises(ValueError, match="at least two classes of at least two images"):
        scores.h_score(FEATURES[:4], np.array([0, 0, 0, 1]))
    with pytest.raises(ValueError, match=r"Received: features of shape \(60, 12\) and labels"):
        scores.transrate(FEATURES, LABELS[:10])
    with pytest.raises(ValueError, match="must be finite"):
        scores.logme(np.full((6, 2), np.nan), np.arange(6) % 2)
