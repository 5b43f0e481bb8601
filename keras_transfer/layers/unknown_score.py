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
      negated. The covariance is kept as its `rank` largest directions and
      one variance for the rest (as probabilistic PCA does), so the layer
      holds `features x rank` numbers, not `features x features`;
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
        rank: Int. The covariance's directions kept (at most the number of
            features). Defaults to `128`.
    """

    def __init__(self, threshold=0.0, rank=128, **kwargs):
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
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise ValueError(
                f"Invalid value for `rank` argument: expected an int >= 1. Received: rank={rank!r}"
            )
        self.threshold, self.rank = float(threshold), rank

    def build(self, input_shape):
        features, logits = input_shape
        dim, classes = int(features[-1]), int(logits[-1])
        add = lambda name, shape, init: self.add_weight(  # noqa: E731
            shape=shape, initializer=init, trainable=False, name=name
        )
        rank = min(self.rank, dim)
        self.means = add("means", (classes, dim), "zeros")
        # The precision: floor * I + basis diag(gains) basis^T.
        self.basis = add("basis", (dim, rank), "zeros")
        self.gains = add("gains", (rank,), "zeros")
        self.floor = add("floor", (), "ones")
        # Each part's (mean, standard deviation) on held-out images:
        # [distance, energy].
        self.center = add("center", (2,), "zeros")
        self.scale = add("scale", (2,), "ones")

    def call(self, inputs):
        features, logits = (keras.ops.cast(x, "float32") for x in inputs)
        features = features / keras.ops.maximum(
            keras.ops.norm(features, axis=-1, keepdims=True), 1e-12
        )
        # |f - m|^2_P = floor |f - m|^2 + sum_j gain_j ((f - m) . u_j)^2,
        # each square expanded, for every class mean m at once.
        means, gains = self.means, self.gains
        fu, mu = keras.ops.matmul(features, self.basis), keras.ops.matmul(means, self.basis)
        square = lambda a: keras.ops.sum(a * a, axis=-1)  # noqa: E731
        distances = self.floor * (
            square(features)[:, None]
            - 2.0 * keras.ops.matmul(features, keras.ops.transpose(means))
            + square(means)[None, :]
        ) + (
            keras.ops.sum(fu * fu * gains, axis=-1)[:, None]
            - 2.0 * keras.ops.matmul(fu * gains, keras.ops.transpose(mu))
            + keras.ops.sum(mu * mu * gains, axis=-1)[None, :]
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
        config.update({"threshold": self.threshold, "rank": self.rank})
        return config
