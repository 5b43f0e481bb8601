"""Calibrated confidence: temperature scaling (Guo et al., ICML 2017), fitted
on images the model did not train on, and how far probabilities are from
the frequencies they claim (the expected calibration error)."""

import keras
import numpy as np

from keras_transfer.layers import TemperatureScaling
from keras_transfer.utils.labels import check_labels

__all__ = [
    "BINS",
    "MIN_IMAGES",
    "calibrate",
    "calibration_report",
    "outputs_and_labels",
    "expected_calibration_error",
    "fit_temperature",
    "negative_log_likelihood",
    "reliability",
]

# The expected calibration error's equal-width confidence bins (Guo et al.).
BINS = 15
# Fewer held-out images than this leave the temperature at 1: a few
# images all classified right would drive it to the sharpest searched.
MIN_IMAGES = 20
# The temperatures searched: a softmax ten times softer to ten times sharper.
_LOW, _HIGH = 0.1, 10.0


def _log_softmax(logits):
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def negative_log_likelihood(logits, labels, temperature=1.0):
    """The mean negative log-likelihood of `labels` under
    `softmax(logits / temperature)`."""
    logits = np.asarray(logits, "float64") / temperature
    return float(-_log_softmax(logits)[np.arange(len(labels)), labels].mean())


def expected_calibration_error(probabilities, labels, bins=BINS):
    """How far confidence is from accuracy: the images binned by their top
    probability into `bins` equal-width bins, each bin's |accuracy -
    confidence| weighted by its share of the images.

    Example:

    >>> p = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.3, 0.7]])
    >>> round(keras_transfer.heads.calibration.expected_calibration_error(p, [0, 1, 0, 1]), 3)
    0.4
    """
    confidence, accuracy, share = reliability(probabilities, labels, bins)
    return float(np.nansum(share * np.abs(accuracy - confidence)))


def reliability(probabilities, labels, bins=BINS):
    """Per equal-width bin of the top probability: `(mean confidence,
    accuracy, share of the images)`, each of length `bins`, NaN for the
    confidence and accuracy of an empty bin (the reliability diagram)."""
    probabilities = np.asarray(probabilities, "float64")
    confidence = probabilities.max(-1)
    right = probabilities.argmax(-1) == np.asarray(labels)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    share = np.bincount(which, minlength=bins) / max(len(right), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        count = np.bincount(which, minlength=bins)
        mean_confidence = np.bincount(which, confidence, bins) / count
        accuracy = np.bincount(which, right.astype(float), bins) / count
    return mean_confidence, accuracy, share


def fit_temperature(logits, labels):
    """The temperature that minimises the negative log-likelihood of
    `labels` under `softmax(logits / T)`: convex in 1/T, found by a golden
    section search over T in [0.1, 10].

    Example:

    >>> from keras_transfer.heads.calibration import fit_temperature
    >>> rng = np.random.default_rng(0)
    >>> labels = rng.integers(0, 3, 2000)
    >>> logits = rng.normal(size=(2000, 3)) + 2.0 * np.eye(3)[labels]
    >>> sharp = 3.0 * logits  # three times too sure of itself
    >>> round(fit_temperature(sharp, labels) / fit_temperature(logits, labels), 2)
    3.0
    """
    logits = np.asarray(logits, "float64")
    labels = check_labels(labels, logits.shape[-1], argument="labels")
    if len(labels) != len(logits):
        raise ValueError(
            "`logits` and `labels` must have one row per image. "
            f"Received: {len(logits)} rows of logits and {len(labels)} labels"
        )
    # Golden section on the inverse temperature, where the loss is convex.
    low, high = 1.0 / _HIGH, 1.0 / _LOW
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    loss = lambda inverse: negative_log_likelihood(logits * inverse, labels)  # noqa: E731
    fa, fb = loss(a), loss(b)
    for _ in range(60):
        if fa < fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = loss(a)
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = loss(b)
    return float(1.0 / ((low + high) / 2.0))


def calibration_report(logits, labels, bins=BINS):
    """`fit_temperature` on `(logits, labels)`, with the expected
    calibration error and negative log-likelihood before and after.

    `ece_after` and `nll_after` are measured on the images that fitted the
    temperature (one number: mildly optimistic); the `_cross_fitted` ones
    score each half of the images with the temperature fitted on the other
    half, never on the images that chose it. Under `MIN_IMAGES` images the
    temperature stays 1, and `skipped` says why.
    """
    logits = np.asarray(logits, "float64")
    labels = np.asarray(labels)
    softmax = lambda z: np.exp(_log_softmax(z))  # noqa: E731
    ece = lambda z: expected_calibration_error(softmax(z), labels, bins)  # noqa: E731
    record = {
        "temperature": 1.0,
        "images": int(len(labels)),
        "bins": bins,
        "ece_before": ece(logits),
        "nll_before": negative_log_likelihood(logits, labels),
    }
    scaled = crossed = logits
    if len(labels) < MIN_IMAGES:
        record["skipped"] = f"{len(labels)} held-out images, fewer than {MIN_IMAGES}"
    else:
        record["temperature"] = fit_temperature(logits, labels)
        scaled = logits / record["temperature"]
        half = np.arange(len(labels)) % 2 == 0
        crossed = np.empty_like(logits)
        for part in (half, ~half):
            crossed[part] = logits[part] / fit_temperature(logits[~part], labels[~part])
    return {
        **record,
        "ece_after": ece(scaled),
        "nll_after": negative_log_likelihood(scaled, labels),
        "ece_after_cross_fitted": ece(crossed),
        "nll_after_cross_fitted": negative_log_likelihood(crossed, labels),
    }


def calibrate(model, x=None, y=None, batch_size=None, *, temperature=None):
    """Temperature scaling of `model`, fitted on images it did not train on,
    or a `temperature` fitted already: `fine_tune`'s adaptive recipe fits
    one on its held-out slice (`history.decision["calibration"]`).

    Example:

    >>> inputs = keras.Input((4,))
    >>> model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    >>> x, y = np.random.rand(64, 4), np.arange(64) % 2
    >>> calibrated = keras_transfer.heads.calibration.calibrate(model, x, y)
    >>> calibrated.layers[-1].name, sorted(calibrated.calibration)[:2]
    ('temperature_scaling', ['bins', 'ece_after'])

    Args:
        model: a model whose output is logits (as `transfer()` builds it).
        x: images the model did not train on (a held-out or validation
            split): an array, or what `model.predict` takes.
        y: their labels; `None` when `x` carries them (an `ImageStream`,
            or a dataset of `(images, labels)` batches).
        batch_size: `predict`'s, for arrays.
        temperature: a temperature fitted already, in place of `x`.

    Returns:
        A `keras.Model`: `model`'s logits divided by the fitted temperature
        (its predicted class unchanged), with `calibration`, the
        `calibration_report` of `x`.
    """
    if (x is None) == (temperature is None):
        raise ValueError(
            "Pass images the model did not train on (`x`), or a `temperature` fitted on them. "
            f"Received: x={'None' if x is None else 'images'}, temperature={temperature!r}"
        )
    if temperature is not None:
        record = {"temperature": temperature, "given": True}
    else:
        logits, y = outputs_and_labels(model, x, y, batch_size)
        record = calibration_report(logits, y)
    output = TemperatureScaling(record["temperature"], name="temperature_scaling")(model.output)
    calibrated = keras.Model(model.input, output, name=model.name)
    calibrated.calibration = record
    return calibrated


def outputs_and_labels(model, x, y=None, batch_size=None):
    """`(outputs, labels)` of `model` on `x`: an array with its labels `y`,
    or, with `y=None`, an `ImageStream` or a dataset of `(images, labels)`
    batches. `outputs` is an array, or a list of arrays for a model of
    several outputs."""
    if y is not None:
        outputs = model.predict(x, batch_size=batch_size, verbose=0)
        return outputs, np.asarray(y)
    # An ImageStream's batches come with their labels (a file that does not
    # decode is skipped from both); a dataset's are (images, labels).
    batches = x.iter_batches() if hasattr(x, "iter_batches") else x
    parts, labels = [], []
    for batch in batches:
        out = model.predict_on_batch(batch[0])
        parts.append([keras.ops.convert_to_numpy(o) for o in keras.tree.flatten(out)])
        labels.append(np.asarray(batch[1]))
    if not parts:
        raise ValueError("No images to predict on: `x` gave no batch (or no file decoded)")
    outputs = [np.concatenate(column) for column in zip(*parts)]
    return (outputs if len(outputs) > 1 else outputs[0]), np.concatenate(labels)
