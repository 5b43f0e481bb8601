"""The adaptive recipe's probe: multinomial logistic regression on a
model's frozen features (scikit-learn; Adam in Keras without it), with C
chosen by cross-validation that keeps an image's augmented views in one
fold, folded back into a kernel and bias for the raw features."""

import keras
import numpy as np

__all__ = ["CV_IMAGES", "PROBE_CS", "fit_probe", "predict_probe"]

# Ascending: the cross-validation follows this path, each fit warm-started.
PROBE_CS = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
# The probe's C is chosen on at most CV_IMAGES images (with their views):
# past a few thousand the choice settles, and 35 fits on 32,000 images and
# their views would take longer than the fine-tuning.
CV_IMAGES = 4000


def fit_probe(
    features,
    labels,
    num_classes,
    seed,
    c=None,
    groups=None,
    weights=None,
    standardized=None,
    balanced=False,
):
    """Multinomial logistic regression on standardised features, folded into
    `{"kernel", "bias", "C", "mean", "scale"}` for raw features. C by
    stratified cross-validation (scikit-learn) on the rows that count,
    unless given; `groups` (the image each row comes from) keeps an image's
    views in one fold.

    The features are standardised in place, in float32, and fitted as they
    are: the probe's matrix is the adaptive recipe's largest array, and a
    copy of it would grow with the folder as much again (twice in float64).

    Args:
        features: float32 `(rows, width)`, C-contiguous: standardised in
            place with the mean and scale of the rows that count.
        labels: `(rows,)` ints.
        num_classes: the model's classes; one absent from the rows that
            count gets a very low bias.
        seed: the folds' seed.
        c: the inverse regularisation; `None` chooses it from `PROBE_CS`.
        groups: `(rows,)` the image of each row (default: its own).
        weights: `(rows,)` 1 for a row that counts, 0 for one left out (a
            held-out image, a file that failed): it stays in the matrix, so
            nothing is copied, and weighs nothing. Other positive weights
            weigh rows in the fits and the cross-validation's scores (a
            rare class's images weighing more).
        standardized: a probe whose `mean` and `scale` `features` were
            standardised with already (a refit on the same matrix).
        balanced: classes count alike: each class's bias is raised by
            minus the log of its share of the rows (logit adjustment, Menon
            et al., ICLR 2021), and C is chosen by balanced accuracy. On
            hymenoptera's features with its ants cut to a fifth, it lifted
            the balanced accuracy 2.2 to 4.4 points over the plain fit, and
            sample weights by class 1.5 to 3 (C from 0.1 to 1).
    """
    if features.dtype != np.float32 or not features.flags.c_contiguous:
        raise ValueError(
            "`features` must be a C-contiguous float32 array, standardised in place. "
            f"Received: dtype={features.dtype}, contiguous={features.flags.c_contiguous}"
        )
    counted = np.ones(len(labels), bool) if weights is None else np.asarray(weights) > 0
    weights = None if weights is None else np.asarray(weights, "float32")
    weigh = lambda rows: None if weights is None else weights[rows]  # noqa: E731
    if standardized is None:
        mean, scale = _moments(features, counted)
        features -= mean.astype("float32")
        features /= scale.astype("float32")
    else:
        mean, scale = standardized["mean"], standardized["scale"]
    z = features
    classes = np.unique(labels[counted])
    # A left-out row weighs nothing, but its class would still be fitted.
    labels = np.where(counted, labels, classes[0])
    shift = np.zeros(num_classes)
    if balanced:
        shares = np.bincount(labels[counted], minlength=num_classes) / counted.sum()
        shift[classes] = -np.log(shares[classes])
    try:
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import balanced_accuracy_score
        from sklearn.model_selection import StratifiedGroupKFold
        from threadpoolctl import threadpool_limits  # scikit-learn's own dependency
    except ImportError:  # the sklearn extra is optional
        kernel, bias = _keras_probe(z[counted], labels[counted], num_classes, seed)
        return _folded(kernel, bias + shift, mean, scale, c)
    # One BLAS thread: the fits are small, and threads cost more than they
    # give (`bench/probe_threads.py`, 2 cores: the default pools took 5.1x
    # as long on dtd10's 1,500 rows 1,280 wide, 3.1x on eurosat10's 3,000).
    with threadpool_limits(1):
        groups = np.arange(len(labels)) if groups is None else groups
        # Folds split images, not their views: at most the images of the rarest class.
        folds = int(min(5, min(len(np.unique(groups[counted & (labels == c)])) for c in classes)))
        if c is None and folds >= 2:
            split = StratifiedGroupKFold(folds, shuffle=True, random_state=seed)
            images = np.unique(groups[counted])
            if len(images) > CV_IMAGES:
                images = np.random.default_rng(seed).choice(images, CV_IMAGES, replace=False)
            rows = np.flatnonzero(counted & np.isin(groups, images))
            scores = np.zeros(len(PROBE_CS))
            for fit_at, score_at in split.split(rows, labels[rows], groups[rows]):
                x, y = z[rows[fit_at]], labels[rows[fit_at]]
                # Along the path of Cs, each fit starts from the last one's
                # solution: on 2,400 eurosat10 features (1,280 wide, 10
                # classes) the seven fits of a fold took 4.1 s, not 7.5 s.
                path = LogisticRegression(max_iter=3000, warm_start=True)
                for i, value in enumerate(PROBE_CS):
                    path.set_params(C=value).fit(x, y, sample_weight=weigh(rows[fit_at]))
                    scored = rows[score_at]
                    if balanced:
                        margins = path.decision_function(z[scored])
                        if margins.ndim == 1:  # binary: class 1's margin over class 0's
                            margins = np.stack([np.zeros_like(margins), margins], axis=1)
                        guess = path.classes_[(margins + shift[path.classes_]).argmax(-1)]
                        scores[i] += balanced_accuracy_score(labels[scored], guess)
                    else:
                        scores[i] += path.score(z[scored], labels[scored], weigh(scored))
            c = PROBE_CS[int(np.argmax(scores))]
        c = 0.1 if c is None else c
        fitted = LogisticRegression(C=c, max_iter=3000).fit(z, labels, sample_weight=weights)
        kernel = np.zeros((z.shape[1], num_classes))
        # Classes absent from these rows keep a very low score.
        bias = np.full(num_classes, -1e4 if len(classes) < num_classes else 0.0)
        if len(classes) == 2:  # binary: class 1's margin against zero for class 0
            kernel[:, classes[1]], bias[classes] = fitted.coef_[0], [0.0, fitted.intercept_[0]]
        else:
            kernel[:, classes], bias[classes] = fitted.coef_.T, fitted.intercept_
    return _folded(kernel, bias + shift, mean, scale, c)


def _folded(kernel, bias, mean, scale, c):
    """The probe for raw features, from its fit on standardised ones."""
    kernel = kernel / scale[:, None]
    return {"kernel": kernel, "bias": bias - mean @ kernel, "C": c, "mean": mean, "scale": scale}


def _moments(features, counted, rows=2048):
    """The float64 mean and standard deviation (+1e-6) of the counted rows,
    a slice at a time: `features.std(0)` would make a float64 copy."""

    def parts():
        for i in range(0, len(features), rows):
            yield features[i : i + rows][counted[i : i + rows]]

    total = max(int(counted.sum()), 1)
    mean = sum(part.sum(0, dtype="float64") for part in parts()) / total
    square = sum(((part - mean) ** 2).sum(0) for part in parts())
    return mean, np.sqrt(square / total) + 1e-6


def _keras_probe(z, labels, num_classes, seed):
    """Without scikit-learn: the same logistic regression, by Adam in Keras."""
    keras.utils.set_random_seed(seed)
    dense = keras.layers.Dense(num_classes, kernel_regularizer=keras.regularizers.L2(1e-3))
    probe = keras.Sequential([keras.Input(z.shape[1:]), dense])
    probe.compile(
        keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    probe.fit(z.astype("float32"), labels, batch_size=len(z), epochs=300, verbose=0)
    kernel, bias = dense.get_weights()
    return np.asarray(kernel, "float64"), np.asarray(bias, "float64")


def predict_probe(features, probe, standardized=False, logits=False):
    """The class `probe` gives each row of raw `features`, or of features
    `standardized` with the probe's own mean and scale; its logits with
    `logits=True`."""
    kernel, bias = probe["kernel"], probe["bias"]
    if standardized:
        kernel, bias = kernel * probe["scale"][:, None], bias + probe["mean"] @ kernel
    out = features @ kernel + bias
    return out if logits else out.argmax(-1)
