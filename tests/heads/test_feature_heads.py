import numpy as np
import pytest

import keras_transfer as kt
from keras_transfer.heads import feature_heads as heads
from keras_transfer.heads.feature_heads import LogisticHead, SVMHead, fit_head
from tests.conftest import BACKEND, pixels, runs_once_in, tiny_backbone

RNG = np.random.default_rng(0)
F = RNG.normal(size=(120, 6)).astype("float32")
LABELS = (F[:, 0] + 0.5 * F[:, 1] > 0).astype(int) + (F[:, 2] > 1.0).astype(int)


@pytest.mark.parametrize(
    "head",
    [
        LogisticHead(C=10.0),
        SVMHead(C=10.0),
        SVMHead(kernel="rbf"),
        LogisticHead(normalize="inf", standardize=True),
        SVMHead(normalize="l2"),
    ],
)
def test_sklearn_heads_fit_predict_evaluate(head):
    head.fit(F, LABELS)
    accuracy = head.evaluate(F, LABELS)
    assert accuracy > 0.75
    assert np.mean(head.predict(F) == LABELS) == pytest.approx(accuracy)
    if isinstance(head, LogisticHead):
        np.testing.assert_allclose(head.predict_proba(F).sum(-1), 1.0, rtol=1e-6)
    else:
        assert head.decision_function(F).shape == (120, 3)


def test_features_object_and_validation_for_the_keras_head():
    feats = kt.Features({"features": F}, LABELS)
    head = fit_head(feats, 3, epochs=40, hidden=[16], validation=(F, LABELS), learning_rate=1e-2)
    assert head.history.history["val_accuracy"][-1] > 0.75


@pytest.mark.skipif(BACKEND != "tensorflow", reason="the tf.data pipeline of fit_head")
def test_large_features_are_read_from_numpy_without_a_copy(monkeypatch):
    # Past COPY_BYTES the pipeline gathers rows from the arrays themselves:
    # every row is seen once an epoch, reshuffled, and a head learns from it.
    seen = []
    monkeypatch.setattr(heads, "COPY_BYTES", 0)
    data = heads._tf_dataset(F, LABELS, 16, shuffle=True)
    for _ in range(2):
        rows = np.concatenate([x[:, 0] for x, _ in data.as_numpy_iterator()])
        seen.append(rows)
        np.testing.assert_array_equal(np.sort(rows), np.sort(F[:, 0]))
    assert not np.array_equal(seen[0], seen[1])  # reshuffled
    loss = fit_head(F, 3, labels=LABELS, epochs=3, learning_rate=1e-2).history.history["loss"]
    assert loss[-1] < loss[0]


@pytest.mark.parametrize("kind", ["keras", "logistic", "svm", "logistic_normalized"])
def test_attached_model_predicts_like_the_head_on_cached_features(kind):
    feature_model = kt.transfer(tiny_backbone(top=False), preprocessing="tf")
    images = pixels(24)
    labels = np.arange(24) % 3
    feats = kt.extract_features(feature_model, (images, labels), progress=False)
    if kind == "keras":
        head = fit_head(feats, 3, epochs=3)
        expected = head.predict(feats.x, verbose=0)
    else:
        head = {
            "logistic": LogisticHead(),
            "svm": SVMHead(),
            "logistic_normalized": LogisticHead(normalize="inf", standardize=True),
        }[kind]
        head.fit(feats)
        expected = (
            head.predict_proba(feats)
            if isinstance(head, LogisticHead)
            else head.decision_function(feats)
        )
    model = kt.attach_head(feature_model, head)
    got = model.predict(images, verbose=0)
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)
    if kind != "keras":
        np.testing.assert_array_equal(got.argmax(-1), head.predict(feats))


def test_bad_input_to_heads():
    with pytest.raises(ValueError, match="Received: 120 feature rows and 3 labels"):
        LogisticHead().fit(F, LABELS[:3])
    bad = F.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="1 NaN or Inf values"):
        SVMHead().fit(bad, LABELS)
    with pytest.raises(ValueError, match="Received: normalize='max'"):
        SVMHead(normalize="max")
    with pytest.raises(TypeError, match="non-linear kernel"):
        kt.attach_head(kt.transfer(tiny_backbone(top=False)), SVMHead(kernel="rbf").fit(F, LABELS))


@runs_once_in("jax")  # the label checks are NumPy, before any backend work
def test_labels_are_checked_before_a_head_learns_a_class_that_does_not_exist():
    with pytest.raises(ValueError, match=r"no examples of class\(es\) \[1\]"):
        LogisticHead().fit(F, np.where(LABELS == 1, 3, LABELS))  # 0, 2, 3: no 1
    feats = kt.Features({"features": F}, LABELS, class_names=["a", "b"])
    with pytest.raises(ValueError, match=r"in \[0, 2\). Received: labels from 0 to 2"):
        LogisticHead().fit(feats)
    with pytest.raises(ValueError, match=r"in \[0, 2\). Received: labels from 0 to 2"):
        fit_head(F, 2, labels=LABELS, epochs=1)
    with pytest.raises(ValueError, match="dtype <U"):
        SVMHead().fit(F, LABELS.astype(str))
    with pytest.raises(ValueError, match="not one-hot rows"):
        fit_head(F, 3, labels=np.eye(3)[LABELS], epochs=1)
    assert LogisticHead().fit(F, LABELS.astype("float64")).evaluate(F, LABELS) > 0.75
