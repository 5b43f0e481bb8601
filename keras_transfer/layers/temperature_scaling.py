import math

import keras

from keras_transfer.utils import _compat

__all__ = ["TemperatureScaling"]


@keras.saving.register_keras_serializable(package="keras_transfer")
class TemperatureScaling(keras.layers.Layer):
    """Divides logits by a temperature fitted on held-out images, so that the
    softmax's probabilities are calibrated (Guo et al., "On Calibration of
    Modern Neural Networks", ICML 2017).

    One positive number, fitted by `ktr.heads.calibration`: above 1 it
    softens an over-confident model, below 1 it sharpens an unsure one. The
    order of the logits, and so the predicted class, does not change. It
    computes in float32, as the classifier's logits do under mixed
    precision.

    Example:

    >>> logits = np.array([[4.0, 0.0], [1.0, 3.0]])
    >>> scaled = keras_transfer.layers.TemperatureScaling(2.0)(logits)
    >>> keras.ops.convert_to_numpy(scaled)
    array([[2. , 0. ],
           [0.5, 1.5]], dtype=float32)

    Args:
        temperature: Positive float. The divisor. Defaults to `1.0` (no
            change).
    """

    def __init__(self, temperature=1.0, **kwargs):
        kwargs["dtype"] = "float32"  # logits stay float32, whatever the policy
        super().__init__(**kwargs)
        if (
            isinstance(temperature, bool)
            or not isinstance(temperature, (int, float))
            or not (math.isfinite(temperature) and temperature > 0)
        ):
            raise ValueError(
                "Invalid value for `temperature` argument: expected a finite "
                f"float above 0. Received: temperature={temperature!r}"
            )
        self.temperature = float(temperature)
        _compat.mark_built_at_init(self)

    def call(self, inputs):
        return keras.ops.cast(inputs, "float32") / self.temperature

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.pop("dtype", None)  # always float32, set at init
        config.update({"temperature": self.temperature})
        return config
