import math

import keras

__all__ = ["UnknownScore"]


@keras.saving.register_keras_serializable(package="keras_transfer")
class UnknownScore(keras.layers.Layer):
    """How much an image looks like the classes the model was trained on:
    low for an image from none of them ("unknown").

    Takes `[features, logits]` (the features that enter the classifier, and
    its logits) and returns `[logits, score]`: the logits unchanged, so the
    layer sits inside a classifier without changing what it answers, and
    one score per image. The score adds two standardized parts:
    - the Mahalanobis distance (Lee et al., 2018) of the L2-normalized
      features to the nearest class mean, with one shared covariance,
      negated;
    - the energy score (Liu et al., 2020), the log-sum-exp of the logits.
    Each part is centred and scaled by its mean and standard deviation on
    held-out images, where `threshold` is also set. An image scoring below
    `threshold` is unknown. The statistics are fitted by
    `ktr.fit_unknown`; the layer computes in float32.

    Example:

    >>> layer = keras_transfer.layers.UnknownScore(threshold=-1.0)
    >>> features, logits = np.ones((2, 4)), np.array([[3.0, 0.0], [0.0, 0.5]])
    >>> out_logits, score = layer([features, logits])
    >>> keras.ops.convert_to_numpy(out_logits).tolist(), tuple(score.shape)
    ([[3.0, 0.0], [0.0, 0.5]], (2,))

    Args:
        threshold: Float. Scores below it are unknown. Defaults to `0.0`.
    """

    def __init__(self, threshold=0.0, **kwargs):
        kwargs["dtype"] = "float32"  # distances and logits stay float32
        super().__init__(**kwargs)
        if (
            isinstance(threshold, bool)
            or not isinstance(threshold, (int, float))
            or not math.isfinite(threshold)
        ):
            raise ValueError(
                "Invalid value for `threshold` argument: expected a finite float. "
                f"Received: threshold={threshold!r}"
            )
        self.threshold = float(threshold)

    def build(self, input_shape):
        features, logits = input_shape
        dim, classes = int(features[-1]), int(logits[-1])
        add = lambda name, shape, init: self.add_weight(  # noqa: E731
            shape=shape, initializer=init, trainable=False, name=name
        )
        self.means = add("means", (classes, dim), "zeros")
        self.precision = add("precision", (dim, dim), "identity")
        # Each part's (mean, standard deviation) on held-out images:
        # [distance, energy].
        self.center = add("center", (2,), "zeros")
        self.scale = add("scale", (2,), "ones")

    def call(self, inputs):
        features, logits = (keras.ops.cast(x, "float32") for x in inputs)
        features = features / keras.ops.maximum(
            keras.ops.norm(features, axis=-1, keepdims=True), 1e-12
        )
        # |f - m|^2_P = fPf - 2 fPm + mPm, for every class mean m at once.
        fp = keras.ops.matmul(features, self.precision)
        mp = keras.ops.matmul(self.means, self.precision)
        distances = (
            keras.ops.sum(fp * features, axis=-1, keepdims=True)
            - 2.0 * keras.ops.matmul(fp, keras.ops.transpose(self.means))
            + keras.ops.sum(mp * self.means, axis=-1)[None, :]
        )
        distance = keras.ops.min(distances, axis=-1)
        energy = keras.ops.logsumexp(logits, axis=-1)
        score = (
            -(distance - self.center[0]) / self.scale[0] + (energy - self.center[1]) / self.scale[1]
        )
        return [logits, score]

    def compute_output_shape(self, input_shape):
        logits = tuple(input_shape[1])
        return [logits, logits[:-1]]

    def get_config(self):
        config = super().get_config()
        config.pop("dtype", None)  # always float32, set at init
        config.update({"threshold": self.threshold})
        return config
