"""The "unknown" answer: a score of how much an image looks like the classes
a model was trained on, with a threshold set on held-out images so that
most images of those classes are accepted.

The score is `UnknownScore`'s: the Mahalanobis distance of the normalized
features to the nearest class mean plus the energy of the logits, each
standardized. Measured on MobileNetV2-0.35's frozen features at 224 px
(area under the ROC curve, in-class validation images against others), the
sum beat each part and nearest neighbours: 0.962 and 0.954 for ants/bees
against textures and back (the Mahalanobis distance alone 0.977 and 0.935,
the energy 0.68 and 0.93, the maximum softmax probability 0.68 and 0.87),
and 0.841 on textures of three classes left out of ten (the maximum softmax
probability 0.79).
"""

import keras
import numpy as np
from sklearn.covariance import LedoitWolf

from keras_transfer.heads.calibration import outputs_and_labels
from keras_transfer.heads.classifier_head import find_head
from keras_transfer.layers import UnknownScore
from keras_transfer.utils import _compat
from keras_transfer.utils.labels import check_labels

__all__ = ["ACCEPT", "MIN_IMAGES", "RANK", "fit_unknown", "unknown_output", "unknown_statistics"]

# The share of held-out images of the model's classes that the threshold
# accepts.
ACCEPT = 0.95
# Fewer held-out images than this set no threshold: the 5% quantile of a
# handful of scores is one image's.
MIN_IMAGES = 20
# The covariance's directions kept, the rest one variance: on the features
# above, 128 of 1,280 gave the full covariance's areas within 0.001 (32:
# 0.005), in a tenth of its numbers (0.65 MB in float32, not 6.5 MB).
RANK = 128


def unknown_statistics(features, labels, num_classes, rank=RANK):
    """`(means, basis, gains, floor)` of `UnknownScore`: the class means of
    the L2-normalized `features`, and the inverse of their shared
    covariance (Ledoit-Wolf shrinkage: there are often fewer images than
    features) as `floor * I + basis diag(gains) basis^T`: its `rank`
    largest directions, and the mean variance of the others."""
    features = np.asarray(features, "float64")
    features = features / np.maximum(np.linalg.norm(features, axis=-1, keepdims=True), 1e-12)
    labels = check_labels(labels, num_classes, argument="labels")
    present = np.bincount(labels, minlength=num_classes) > 0
    if not present.all():
        raise ValueError(
            "Every class needs training images for its mean. Received: none of class "
            f"{np.flatnonzero(~present).tolist()}"
        )
    means = np.stack([features[labels == c].mean(0) for c in range(num_classes)])
    covariance = LedoitWolf().fit(features - means[labels]).covariance_
    variances, directions = np.linalg.eigh(covariance)  # ascending
    rank = min(rank, len(variances) - 1)
    floor = 1.0 / variances[:-rank].mean()
    gains = 1.0 / variances[-rank:] - floor
    return (
        means.astype("float32"),
        directions[:, -rank:].astype("float32"),
        gains.astype("float32"),
        np.float32(floor),
    )


def fit_unknown(model, train, held_out, train_labels=None, held_out_labels=None, accept=ACCEPT):
    """Gives `model` an "unknown" score: `UnknownScore` fitted on the
    features of `train` (its class means and covariance) and on `held_out`
    (each part's scale, and the threshold that accepts `accept` of them).

    Example:

    >>> inputs = keras.Input((4,))  # the features enter the `head`
    >>> head = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)], name="head")
    >>> model = keras.Model(inputs, head(inputs))
    >>> x, y = np.random.default_rng(0).normal(size=(60, 4)), np.arange(60) % 2
    >>> scored = keras_transfer.fit_unknown(model, x[:40], x[40:], y[:40], y[40:])
    >>> sorted(keras_transfer.unknown_output(scored).predict(x, verbose=0))
    ['logits', 'unknown_score']

    Args:
        model: a classifier whose output is logits, with a `head` layer
            taking the features (as `transfer(..., num_classes=N)` builds
            it; calibrated or not).
        train: images the model trained on, with their labels: an
            `ImageStream`, a dataset of `(images, labels)`, or an array
            with `train_labels`.
        held_out: images it did not train on (a held-out or validation
            split), the same ways, or with `held_out_labels`.
        accept: the share of `held_out` the threshold accepts (default
            0.95).

    Returns:
        A `keras.Model` with the same output (the `UnknownScore` layer
        passes the logits through), and `unknown`, a dict: the threshold,
        the images used and the share of `held_out` accepted. With fewer
        than `MIN_IMAGES` held-out images, `model` itself, with `unknown`
        saying why it has no score.
    """
    if not (isinstance(accept, float) and 0.5 <= accept < 1):
        raise ValueError(f"`accept` must be a float in [0.5, 1). Received: accept={accept!r}")
    if any(isinstance(layer, UnknownScore) for layer in model.layers):
        raise ValueError(
            "The model already has an unknown score. Received: a model with an "
            "UnknownScore layer; fit the score on the model before it was given one"
        )
    last = model.layers[-1]
    if isinstance(last, keras.layers.Softmax) or getattr(last, "activation", None) is (
        keras.activations.softmax
    ):
        raise ValueError(
            "`fit_unknown` reads the model's logits: pass the model before its softmax "
            f"(as transfer() builds it). Received: a model ending in {last.name!r}, a softmax"
        )
    features = _compat.input_in_graph(model, find_head(model))
    view = keras.Model(model.input, [features, model.output])
    (train_features, _), labels = outputs_and_labels(view, train, train_labels)
    num_classes = int(model.output.shape[-1])
    statistics = unknown_statistics(train_features, labels, num_classes)
    (held_features, held_logits), _ = outputs_and_labels(view, held_out, held_out_labels)
    record = {"train_images": int(len(labels)), "held_out_images": int(len(held_features))}
    if len(held_features) < MIN_IMAGES:
        model.unknown = {
            **record,
            "threshold": None,
            "skipped": f"{len(held_features)} held-out images, fewer than {MIN_IMAGES}",
        }
        return model
    # Each part is scaled on held-out images: on training images a fine-tuned
    # model's features sit closer to their class means than a new image's do.
    parts = _parts(statistics, held_features, held_logits)
    center, scale = parts.mean(0), np.maximum(parts.std(0), 1e-6)
    scores = -(parts[:, 0] - center[0]) / scale[0] + (parts[:, 1] - center[1]) / scale[1]
    rank = len(statistics[2])
    threshold = float(np.quantile(scores, 1.0 - accept))
    layer = UnknownScore(threshold, rank=rank, name="unknown_score")
    logits, _ = layer([features, model.output])
    layer.set_weights([*statistics, center.astype("float32"), scale.astype("float32")])
    scored = keras.Model(model.input, logits, name=model.name)
    scored.unknown = {
        **record,
        "threshold": layer.threshold,
        "accept": accept,
        "held_out_accepted": float(np.mean(scores >= layer.threshold)),
    }
    return scored


def unknown_output(model):
    """The model with two named outputs: its own (`"probabilities"`, or
    `"logits"` for a model without a softmax) and `"unknown_score"`, one
    score per image; below the `UnknownScore` layer's `threshold` is
    unknown. `None` when the model has no unknown score."""
    layers = [layer for layer in model.layers if isinstance(layer, UnknownScore)]
    if not layers:
        return None
    last = model.layers[-1]
    softmax = isinstance(last, keras.layers.Softmax) or getattr(last, "activation", None) is (
        keras.activations.softmax
    )
    name = "probabilities" if softmax else "logits"
    return keras.Model(
        model.input, {name: model.output, "unknown_score": layers[0].output[1]}, name=model.name
    )


def _parts(statistics, features, logits):
    """Each image's `[distance, energy]`, as `UnknownScore` computes them
    before standardizing."""
    means, basis, gains, floor = (np.asarray(s, "float64") for s in statistics)
    features = np.asarray(features, "float64")
    features = features / np.maximum(np.linalg.norm(features, axis=-1, keepdims=True), 1e-12)
    precision = floor * np.eye(len(basis)) + (basis * gains) @ basis.T
    fp, mp = features @ precision, means @ precision
    distances = (fp * features).sum(-1)[:, None] - 2 * fp @ means.T + (mp * means).sum(-1)
    distance = distances.min(-1)
    logits = np.asarray(logits, "float64")
    top = logits.max(-1)
    energy = top + np.log(np.exp(logits - top[:, None]).sum(-1))
    return np.stack([distance, energy], axis=1)
