import keras
from keras import ops

from keras_transfer.utils import _compat

__all__ = ["InfNormalize"]


@keras.saving.register_keras_serializable(package="keras_transfer")
class InfNormalize(keras.layers.Layer):
    """Divides each input by its L-infinity norm (its largest absolute entry).

    This is the method's normalisation `F* = E / ||E||_inf`. Unlike L2
    normalisation it keeps the features' sparsity pattern and puts every
    sample's largest entry at exactly 1 (for any input whose largest absolute
    entry is at least `epsilon`). A vector whose norm is below `epsilon` is
    divided by `epsilon` instead, so a zero vector stays zero and neither
    values nor gradients ever become NaN or Inf.

    Float16 inputs are normalised in float32 and cast back: `epsilon` would
    otherwise underflow to zero in float16.

    Example:

    >>> x = np.array([[1.0, -4.0, 2.0], [0.0, 0.0, 0.0]])
    >>> y = keras_transfer.layers.InfNormalize()(x)
    >>> keras.ops.convert_to_numpy(y)
    array([[ 0.25, -1.  ,  0.5 ],
           [ 0.  ,  0.  ,  0.  ]], dtype=float32)

    Args:
        axis: Integer or list/tuple of integers. The axis or axes over which
            the largest absolute entry is taken. Defaults to `-1`.
        epsilon: Positive float. The smallest norm divided by. Defaults to
            `1e-12`.
    """

    def __init__(self, axis=-1, epsilon=1e-12, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, (list, tuple)) and all(isinstance(a, int) for a in axis):
            self.axis = list(axis)
        elif isinstance(axis, int):
            self.axis = axis
        else:
            raise TypeError(
                "Invalid value for `axis` argument: expected an int or a "
                f"list/tuple of ints. Received: axis={axis!r}"
            )
        if not isinstance(epsilon, (int, float)) or not epsilon > 0:
            raise ValueError(
                "Invalid value for `epsilon` argument: expected a positive "
                f"float. Received: epsilon={epsilon!r}"
            )
        self.epsilon = float(epsilon)
        self.supports_masking = True
        _compat.mark_built_at_init(self)

    def call(self, inputs):
        dtype = inputs.dtype
        if keras.backend.standardize_dtype(dtype) == "float16":
            inputs = ops.cast(inputs, "float32")
        norm = ops.max(ops.abs(inputs), axis=self.axis, keepdims=True)
        outputs = inputs / ops.maximum(norm, self.epsilon)
        return ops.cast(outputs, dtype)

    def compute_output_shape(self, input_shape):
        axes = self.axis if isinstance(self.axis, list) else [self.axis]
        for axis in axes:
            if axis >= len(input_shape) or axis < -len(input_shape):
                raise ValueError(
                    f"Axis {axis} is out of bounds for input shape "
                    f"{input_shape}. Received: axis={self.axis}"
                )
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"axis": self.axis, "epsilon": self.epsilon})
        return config
