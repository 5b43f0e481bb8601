import math

import keras
import numpy as np
from keras import ops

__all__ = ["TransferMatrix"]

_METHODS = ("cross_covariance", "least_squares", "coral")


@keras.saving.register_keras_serializable(package="keras_transfer")
class TransferMatrix(keras.layers.Layer):
    """Maps source features into a target feature space: `y = x T`.

    The layer holds the method's transfer matrix `T = (C / alpha) A^T W` as a
    trainable kernel and computes

    `y = activation(P * ((C / alpha) * x @ T) + b)`

    where `C` is `coefficient`, `alpha` is `scale`, `P` an optional trainable
    per-output gate initialised to ones and `b` an optional bias. Train it
    like a `Dense` layer, or build it in closed form from paired features
    with `TransferMatrix.from_features()`.

    Example:

    >>> source = np.random.rand(64, 8).astype("float32")
    >>> target = np.random.rand(64, 4).astype("float32")
    >>> layer = keras_transfer.layers.TransferMatrix.from_features(
    ...     source, target, method="least_squares")
    >>> tuple(layer(source).shape)
    (64, 4)

    Args:
        units: Positive integer, the width of the target feature space.
        coefficient: Float, the transfer coefficient `C`. Defaults to `1.0`.
        scale: Positive float, the scaling factor `alpha`. Defaults to `1.0`.
        use_gate: Boolean, whether to learn the elementwise gate `P`.
            Defaults to `False`.
        activation: Activation function `phi`, or `None` for linear.
        use_bias: Boolean, whether to add a bias. Defaults to `False`.
        kernel_initializer: Initializer for `T`. `"identity"` is allowed
            when `units` equals the input width. Defaults to
            `"glorot_uniform"`.
        kernel_regularizer: Optional regularizer for `T`.
        trainable_coefficient: Boolean, whether `C` is learnt as a scalar
            weight. Defaults to `False`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.
    """

    def __init__(
        self,
        units,
        coefficient=1.0,
        scale=1.0,
        use_gate=False,
        activation=None,
        use_bias=False,
        kernel_initializer="glorot_uniform",
        kernel_regularizer=None,
        trainable_coefficient=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, int) or units < 1:
            raise ValueError(
                "`units` must be a positive integer, the width of the target "
                f"feature space. Received: units={units!r}"
            )
        if not _is_finite_number(coefficient):
            raise ValueError(
                f"`coefficient` must be a finite number. Received: coefficient={coefficient!r}"
            )
        if not _is_finite_number(scale) or scale <= 0:
            raise ValueError(
                f"`scale` (alpha) must be a positive finite number. Received: scale={scale!r}"
            )
        self.units = units
        self.coefficient = float(coefficient)
        self.scale = float(scale)
        self.use_gate = bool(use_gate)
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.trainable_coefficient = bool(trainable_coefficient)
        self.input_spec = keras.layers.InputSpec(min_ndim=2)
        self.supports_masking = True

    def build(self, input_shape):
        input_dim = input_shape[-1]
        if input_dim is None:
            raise ValueError(
                "TransferMatrix needs a known last (feature) dimension. "
                f"Received: input_shape={input_shape}"
            )
        if (
            isinstance(self.kernel_initializer, keras.initializers.Identity)
            and input_dim != self.units
        ):
            raise ValueError(
                '`kernel_initializer="identity"` needs `units` equal to the '
                f"input width. Received: units={self.units}, input width="
                f"{input_dim}"
            )
        self.kernel = self.add_weight(
            name="kernel",
            shape=(input_dim, self.units),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
        )
        self.gate = (
            self.add_weight(name="gate", shape=(self.units,), initializer="ones")
            if self.use_gate
            else None
        )
        self.bias = (
            self.add_weight(name="bias", shape=(self.units,), initializer="zeros")
            if self.use_bias
            else None
        )
        self.learned_coefficient = (
            self.add_weight(
                name="coefficient",
                shape=(),
                initializer=keras.initializers.Constant(self.coefficient),
            )
            if self.trainable_coefficient
            else None
        )
        self.input_spec = keras.layers.InputSpec(min_ndim=2, axes={-1: input_dim})

    def call(self, inputs):
        outputs = ops.matmul(inputs, self.kernel)
        if self.learned_coefficient is not None:
            outputs = outputs * (self.learned_coefficient / self.scale)
        elif self.coefficient / self.scale != 1.0:
            outputs = outputs * (self.coefficient / self.scale)
        if self.gate is not None:
            outputs = outputs * self.gate
        if self.bias is not None:
            outputs = outputs + self.bias
        return self.activation(outputs)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "coefficient": self.coefficient,
                "scale": self.scale,
                "use_gate": self.use_gate,
                "activation": keras.activations.serialize(self.activation),
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
                "trainable_coefficient": self.trainable_coefficient,
            }
        )
        return config

    @classmethod
    def from_features(
        cls,
        source,
        target=None,
        method="cross_covariance",
        coefficient=1.0,
        scale=None,
        ridge=1e-3,
        **kwargs,
    ):
        """Builds a `TransferMatrix` in closed form from features.

        Args:
            source: Array of shape `(N, d_s)`, source features `A`, one
                sample per row.
            target: Array of shape `(N, d_t)`, the paired target-side
                features or weights `W`. Defaults to `source` itself.
            method: One of:
                - `"cross_covariance"`: the method's `T = (C/alpha) A^T W`;
                  rows are paired and `alpha` defaults to `N`.
                - `"least_squares"`: the ridge solution of
                  `min ||A T - W||^2 + ridge * ||T||^2`; rows are paired.
                - `"coral"`: no pairing. Whitens with the regularised source
                  covariance and re-colours with the regularised target
                  covariance, so that mapped source features take the
                  target's covariance; the bias matches the target's mean.
            coefficient: The transfer coefficient `C`.
            scale: The scaling factor `alpha`. Defaults to `N` for
                `"cross_covariance"` and `1` otherwise.
            ridge: Non-negative float added to the diagonal of the
                covariances (`"least_squares"`, `"coral"`).
            **kwargs: Passed to the constructor (`activation`, `use_gate`,
                `name`, ...).

        Returns:
            A built `TransferMatrix` whose output on `source` is the mapping.
        """
        if method not in _METHODS:
            raise ValueError(f"`method` must be one of {_METHODS}. Received: method={method!r}")
        a = _as_feature_matrix(source, "source")
        w = a if target is None else _as_feature_matrix(target, "target")
        if method != "coral" and a.shape[0] != w.shape[0]:
            raise ValueError(
                f"`{method}` pairs the rows of `source` and `target`, so they "
                f"need the same number of rows. Received: source with "
                f"{a.shape[0]} rows, target with {w.shape[0]} rows"
            )
        if not _is_finite_number(ridge) or ridge < 0:
            raise ValueError(f"`ridge` must be a non-negative number. Received: ridge={ridge!r}")
        n, d_s = a.shape
        d_t = w.shape[1]
        if scale is None:
            scale = float(n) if method == "cross_covariance" else 1.0
        bias = None
        if method == "cross_covariance":
            kernel = a.T @ w
        elif method == "least_squares":
            kernel = np.linalg.solve(a.T @ a + ridge * np.eye(d_s), a.T @ w)
        else:
            if d_s != d_t:
                raise ValueError(
                    "`coral` maps between spaces of equal width. Received: "
                    f"source width {d_s}, target width {d_t}"
                )
            if min(n, w.shape[0]) < 2:
                raise ValueError(
                    "`coral` estimates covariances and needs at least 2 rows "
                    f"in each set. Received: source with {n} rows, target "
                    f"with {w.shape[0]} rows"
                )
            c_s = np.cov(a, rowvar=False) + ridge * np.eye(d_s)
            c_t = np.cov(w, rowvar=False) + ridge * np.eye(d_t)
            kernel = _sqrtm(c_s, inverse=True) @ _sqrtm(c_t)
            bias = w.mean(0) - (coefficient / scale) * (a.mean(0) @ kernel)
            kwargs.setdefault("use_bias", True)
        layer = cls(units=d_t, coefficient=coefficient, scale=scale, **kwargs)
        layer.build((None, d_s))
        layer.kernel.assign(kernel.astype(layer.kernel.dtype))
        if layer.bias is not None and bias is not None:
            layer.bias.assign(bias.astype(layer.bias.dtype))
        return layer


def _is_finite_number(value):
    return (
        isinstance(value, (int, float, np.number))
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def _as_feature_matrix(value, name):
    try:
        array = np.asarray(keras.ops.convert_to_numpy(value), dtype="float64")
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"`{name}` must be a 2D array of features. Received: "
            f"{name} of type {type(value).__name__}"
        ) from error
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(
            f"`{name}` must be a non-empty 2D array (samples, features). "
            f"Received: {name} with shape {array.shape}"
        )
    if not np.all(np.isfinite(array)):
        bad = int(np.sum(~np.isfinite(array)))
        raise ValueError(
            f"`{name}` must hold finite values. Received: {name} with {bad} NaN or Inf entries"
        )
    return array


def _sqrtm(matrix, inverse=False):
    """Square root (or inverse square root) of a symmetric PD matrix."""
    values, vectors = np.linalg.eigh(matrix)
    values = np.clip(values, np.finfo("float64").tiny, None)
    power = -0.5 if inverse else 0.5
    return (vectors * values**power) @ vectors.T
