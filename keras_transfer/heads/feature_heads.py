"""Heads on extracted features: a small Keras head, and scikit-learn's SVM and
logistic regression, plus `attach_head` to put one back on the backbone.
The recipe that trains one on a frozen backbone's features is
`ktr.recipes.feature_extraction.train_on_features`."""

import keras
import numpy as np

from keras_transfer import strategies
from keras_transfer.heads.classifier_head import head_layers
from keras_transfer.layers import InfNormalize
from keras_transfer.utils import guards, multi_worker
from keras_transfer.utils.labels import check_labels

__all__ = ["COPY_BYTES", "LogisticHead", "SVMHead", "attach_head", "fit_head"]

# The feature-extraction strategy trains this head: one set of defaults.
_DEFAULTS = dict(strategies.get("feature_extraction").defaults)

_NORMALIZE = (None, "inf", "l2")


def fit_head(
    features,
    num_classes,
    labels=None,
    hidden=None,
    epochs=_DEFAULTS["epochs"],
    validation=None,
    batch_size=32,
    learning_rate=_DEFAULTS["learning_rate"],
    dropout=0.2,
    verbose=0,
    callbacks=None,
):
    """Trains a small Keras head on cached features.

    Example:

    >>> x = np.random.rand(40, 8).astype("float32"); y = (x[:, 0] > 0.5).astype(int)
    >>> head = keras_transfer.heads.fit_head(x, 2, labels=y, epochs=2)
    >>> head.output.shape[-1]
    2

    Args:
        features: a `Features` or an array `(N, width)`.
        num_classes: number of classes.
        labels: labels, when `features` is an array.
        hidden: optional list of hidden widths.
        epochs, batch_size, learning_rate, dropout, verbose: training knobs.
        validation: a `Features` or `(x, y)` pair for validation.
        callbacks: passed to `fit`.

    Returns:
        The trained head (a `keras.Model` taking features, giving logits),
        with its `History` as `.history`.
    """
    guards.check_learning_rate(learning_rate)
    guards.check_batch_size(batch_size)
    multi_worker.patch_if_needed()
    x, y = _xy(features, labels, num_classes=num_classes)
    inputs = keras.Input(x.shape[1:])
    h = inputs
    for layer in head_layers(num_classes, hidden, dropout):
        h = layer(h)
    head = keras.Model(inputs, h, name="head")
    head.compile(
        keras.optimizers.Adam(learning_rate),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    # Built here, not inside the first traced step: TensorFlow would trace
    # that step twice to create the slots, most of a small head's fit time.
    head.optimizer.build(head.trainable_variables)
    validation_data = None if validation is None else _xy(validation, None, num_classes=num_classes)
    train = _tf_dataset(x, y, batch_size, shuffle=True)
    stop = guards.StopOnNonFiniteLoss()
    callbacks = [stop, *(callbacks or [])]
    if train is not None:
        validation_data = validation_data and _tf_dataset(
            *validation_data, batch_size, shuffle=False
        )
        head.fit(
            train,
            epochs=epochs,
            validation_data=validation_data,
            verbose=verbose,
            callbacks=callbacks,
            shuffle=False,
        )  # the pipeline shuffles
    else:
        head.fit(
            x,
            y,
            epochs=epochs,
            batch_size=batch_size,
            validation_data=validation_data,
            verbose=verbose,
            callbacks=callbacks,
        )
    stop.check("fit_head")
    return head


# Features up to this size are copied into a tf.data pipeline (the fastest
# for a small head); larger ones are read from NumPy as the batches go.
COPY_BYTES = 64 * 2**20


def _tf_dataset(x, y, batch_size, shuffle):
    """On TensorFlow, arrays as a plain tf.data pipeline, batched as `fit`
    batches them (reshuffled each epoch, last batch partial): Keras's array
    adapter makes iterators at ~35 ms each, four per epoch, half of a small
    head's fit time. `None` on the other backends."""
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    if x.nbytes <= COPY_BYTES:
        data = tf.data.Dataset.from_tensor_slices((x, y))
        if shuffle:
            data = data.shuffle(len(x), reshuffle_each_iteration=True)
        return data.batch(batch_size)
    # Larger: TensorFlow would hold two copies of the features (290 MB for
    # 32,000 rows of 1,280 floats), so row numbers are shuffled instead, and
    # 32 batches' rows at a time are gathered from the arrays themselves.
    data = tf.data.Dataset.range(len(x))
    if shuffle:
        data = data.shuffle(len(x), reshuffle_each_iteration=True)

    def gather(rows):
        features, labels = tf.numpy_function(
            lambda rows: (x[rows], y[rows]), [rows], (tf.as_dtype(x.dtype), tf.as_dtype(y.dtype))
        )
        features.set_shape((None, *x.shape[1:]))
        labels.set_shape((None,))
        return features, labels

    return data.batch(32 * batch_size).map(gather).unbatch().batch(batch_size)


class _SklearnHead:
    def __init__(self, estimator, normalize, standardize):
        if normalize not in _NORMALIZE:
            raise ValueError(
                f"`normalize` must be one of {_NORMALIZE}. Received: normalize={normalize!r}"
            )
        self.estimator, self.normalize, self.standardize = estimator, normalize, standardize
        self.mean_ = self.scale_ = None

    def _transform(self, x, fit=False):
        x = np.asarray(x, dtype="float64")
        if self.normalize == "inf":
            x = x / np.maximum(np.abs(x).max(-1, keepdims=True), 1e-12)
        elif self.normalize == "l2":
            x = x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
        if self.standardize:
            if fit:
                self.mean_, self.scale_ = x.mean(0), x.std(0) + 1e-12
            x = (x - self.mean_) / self.scale_
        return x

    def fit(self, features, labels=None):
        names = getattr(features, "class_names", None)
        x, y = _xy(features, labels, num_classes=len(names) if names else None)
        # The classifier's rows are the classes it saw: every class in
        # 0..K-1 needs examples, or attach_head would number them wrongly.
        missing = sorted(set(range(len(names) if names else int(y.max()) + 1)) - set(y.tolist()))
        if missing:
            raise ValueError(
                f"`labels` must hold every class from 0 to K-1, each with examples. "
                f"Received: no examples of class(es) {missing[:10]}"
            )
        self.estimator.fit(self._transform(x, fit=True), y)
        return self

    def predict(self, features):
        return self.estimator.predict(self._transform(_xy(features, None, need_labels=False)[0]))

    def evaluate(self, features, labels=None):
        """Accuracy on `features`."""
        x, y = _xy(features, labels)
        return float(np.mean(self.estimator.predict(self._transform(x)) == y))


class SVMHead(_SklearnHead):
    """A support-vector machine on features: LinearSVC, or SVC with a kernel.

    Example:

    >>> x = np.random.rand(40, 8); y = (x[:, 0] > 0.5).astype(int)
    >>> keras_transfer.heads.SVMHead(C=10.0).fit(x, y).evaluate(x, y) > 0.8
    True

    Args:
        kernel: `"linear"` (LinearSVC) or an SVC kernel (`"rbf"`, ...).
        C: regularisation strength (inverse).
        normalize: `None`, `"inf"` (the method's InfNormalize) or `"l2"`.
        standardize: standardise each feature on the training set.
    """

    def __init__(self, kernel="linear", C=1.0, normalize=None, standardize=False, **kwargs):
        svm = _sklearn("svm")
        estimator = (
            svm.LinearSVC(C=C, **kwargs)
            if kernel == "linear"
            else svm.SVC(C=C, kernel=kernel, **kwargs)
        )
        super().__init__(estimator, normalize, standardize)
        self.kernel = kernel

    def decision_function(self, features):
        """Per-class margins (an SVM has no calibrated probabilities)."""
        return self.estimator.decision_function(
            self._transform(_xy(features, None, need_labels=False)[0])
        )


class LogisticHead(_SklearnHead):
    """Multinomial logistic regression on features (the linear probe).

    Args:
        C: regularisation strength (inverse).
        normalize: `None`, `"inf"` or `"l2"`.
        standardize: standardise each feature on the training set.
        max_iter: solver iterations.
    """

    def __init__(self, C=1.0, normalize=None, standardize=False, max_iter=2000, **kwargs):
        linear_model = _sklearn("linear_model")
        super().__init__(
            linear_model.LogisticRegression(C=C, max_iter=max_iter, **kwargs),
            normalize,
            standardize,
        )

    def predict_proba(self, features):
        return self.estimator.predict_proba(
            self._transform(_xy(features, None, need_labels=False)[0])
        )


def attach_head(feature_model, head):
    """One end-to-end model on raw images: a feature model plus a head.

    Args:
        feature_model: a model giving features, e.g. `transfer(backbone)`.
        head: a Keras head (`fit_head`), or a linear `SVMHead` /
            `LogisticHead`, whose coefficients become a Dense layer (with
            softmax for logistic regression).

    Returns:
        A `keras.Model` from images to logits or probabilities.
    """
    x = feature_model.output
    if isinstance(head, keras.layers.Layer):
        return keras.Model(feature_model.input, head(x), name="attached")
    if not isinstance(head, _SklearnHead) or not hasattr(head.estimator, "coef_"):
        raise TypeError(
            "`head` must be a Keras layer or model, or a fitted linear SVMHead / "
            f"LogisticHead. Received: {type(head).__name__}"
            + (" with a non-linear kernel" if isinstance(head, SVMHead) else "")
        )
    if head.normalize == "inf":
        x = InfNormalize(epsilon=1e-12)(x)
    elif head.normalize == "l2":
        x = keras.layers.UnitNormalization()(x)
    if head.standardize:
        x = keras.layers.Normalization(mean=head.mean_, variance=head.scale_**2)(x)
    coef, intercept = head.estimator.coef_, head.estimator.intercept_
    if coef.shape[0] == 1:  # binary: class 1's score against a zero for class 0
        coef = np.concatenate([np.zeros_like(coef), coef])
        intercept = np.concatenate([[0.0], intercept])
    dense = keras.layers.Dense(coef.shape[0], dtype="float32", name="sklearn_head")
    out = dense(x)
    dense.set_weights([coef.T.astype("float32"), intercept.astype("float32")])
    if isinstance(head, LogisticHead):
        out = keras.layers.Softmax(dtype="float32")(out)
    return keras.Model(feature_model.input, out, name="attached")


def _xy(features, labels, need_labels=True, num_classes=None):
    if hasattr(features, "x") and hasattr(features, "labels"):  # a Features
        x, y = features.x, features.labels if labels is None else labels
    elif isinstance(features, tuple) and len(features) == 2:
        x, y = features
    else:
        x, y = features, labels
    guards.check_finite_length(x, "features", "a Features or an array (N, width)")
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(
            "`features` must be a Features or a 2D array (samples, width). Received: "
            f"{type(x).__name__ if x.dtype == object else 'an array'} of shape {x.shape}"
        )
    # Check the extraction (input pixels, weights) when this fails.
    guards.check_finite_values(x, "features", "values")
    if y is None:
        if need_labels:
            raise ValueError("Labels are needed: pass `labels`, or Features with labels.")
        return x, None
    y = check_labels(y, num_classes, argument="labels")
    if len(y) != len(x):
        raise ValueError(
            f"Labels do not match the features. Received: {len(x)} feature rows and {len(y)} labels"
        )
    return x, y


def _sklearn(module):
    try:
        import importlib

        return importlib.import_module(f"sklearn.{module}")
    except ImportError as error:
        raise ImportError(
            "scikit-learn is needed for SVMHead and LogisticHead. Install it with "
            "`pip install keras-transfer[sklearn]`."
        ) from error
