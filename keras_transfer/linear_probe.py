"""The adaptive recipe's probe: multinomial logistic regression on a
model's frozen features (scikit-learn; Adam in Keras without it), with C
chosen by cross-validation that keeps an image's augmented views in one
fold, folded back into a kernel and bias for the raw features."""

import keras
import numpy as np

__all__ = ["CV_IMAGES", "PROBE_CS", "fit_probe", "predict_probe"]

PROBE_CS = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
# The probe's C is chosen on at most CV_IMAGES images (with their views):
# past a few thousand the choice settles, and 35 fits on 32,000 images and
# their views would take longer than the fine-tuning.
CV_IMAGES = 4000


def fit_probe(features, labels, num_classes, seed, c=None, groups=None):
    """Multinomial logistic regression on standardised features, folded into
    `{"kernel", "bias", "C"}` for raw features. C by stratified
    cross-validation on these rows (scikit-learn), unless given; `groups`
    (the image each row comes from) keeps an image's views in one fold."""
    # In float64, with one copy of the (float32) features.
    mean, scale = features.mean(0, dtype="float64"), features.std(0, dtype="float64") + 1e-6
    z = features - mean
    z /= scale
    classes = np.unique(labels)
    try:
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import StratifiedGroupKFold, cross_val_score
    except ImportError:  # the sklearn extra is optional
        kernel, bias = _keras_probe(z, labels, num_classes, seed)
    else:
        groups = np.arange(len(labels)) if groups is None else groups
        # Folds split images, not their views: at most the images of the rarest class.
        folds = int(min(5, min(len(np.unique(groups[labels == c])) for c in classes)))
        if c is None and folds >= 2:
            split = StratifiedGroupKFold(folds, shuffle=True, random_state=seed)
            images = np.unique(groups)
            if len(images) > CV_IMAGES:
                chosen = np.random.default_rng(seed).choice(images, CV_IMAGES, replace=False)
                rows = np.isin(groups, chosen)
            else:
                rows = slice(None)
            scores = [
                cross_val_score(
                    LogisticRegression(C=value, max_iter=3000),
                    z[rows],
                    labels[rows],
                    cv=split,
                    groups=groups[rows],
                ).mean()
                for value in PROBE_CS
            ]
            c = PROBE_CS[int(np.argmax(scores))]
        c = 0.1 if c is None else c
        fitted = LogisticRegression(C=c, max_iter=3000).fit(z, labels)
        kernel = np.zeros((z.shape[1], num_classes))
        # Classes absent from these rows keep a very low score.
        bias = np.full(num_classes, -1e4 if len(classes) < num_classes else 0.0)
        if len(classes) == 2:  # binary: class 1's margin against zero for class 0
            kernel[:, classes[1]], bias[classes] = fitted.coef_[0], [0.0, fitted.intercept_[0]]
        else:
            kernel[:, classes], bias[classes] = fitted.coef_.T, fitted.intercept_
    kernel = kernel / scale[:, None]
    bias = bias - mean @ kernel
    return {"kernel": kernel, "bias": bias, "C": c}


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


def predict_probe(features, probe):
    return (features @ probe["kernel"] + probe["bias"]).argmax(-1)
