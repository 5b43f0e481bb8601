"""The two penalties of L2-SP as Keras regularizers, and the variables they
can cover. A leaf: `BackboneModel` saves a `StartingPoint` with the model."""

import keras
import numpy as np
from keras import ops

from keras_transfer.utils import _compat

__all__ = ["HalfL2", "StartingPoint", "candidate_variables"]


@keras.saving.register_keras_serializable(package="keras_transfer")
class StartingPoint(keras.regularizers.Regularizer):
    """`alpha/2 * sum((w - w0)^2)` for one variable, `w0` its value at attach.

    Example:

    >>> reg = keras_transfer.regularizers.StartingPoint(2.0, np.ones((2,)))
    >>> float(reg(keras.ops.convert_to_tensor(np.array([1.0, 3.0]))))
    4.0

    Args:
        alpha: strength.
        start: the starting value (an array of the variable's shape).
    """

    def __init__(self, alpha, start):
        self.alpha = float(alpha)
        self.start = np.asarray(start)

    def __call__(self, x):
        start = ops.cast(ops.convert_to_tensor(self.start), x.dtype)
        return ops.multiply(0.5 * self.alpha, ops.sum(ops.square(ops.subtract(x, start))))

    def get_config(self):
        # Never serialised with a model: BackboneModel saves `start` as an
        # array in the weights file.
        return {"alpha": self.alpha, "start": self.start.tolist()}


@keras.saving.register_keras_serializable(package="keras_transfer")
class HalfL2(keras.regularizers.Regularizer):
    """`beta/2 * sum(w^2)`, the paper's penalty on the new head."""

    def __init__(self, beta):
        self.beta = float(beta)

    def __call__(self, x):
        return ops.multiply(0.5 * self.beta, ops.sum(ops.square(x)))

    def get_config(self):
        return {"beta": self.beta}


def candidate_variables(layer):
    """Every variable that can train, frozen or not (no BN statistics)."""
    seen, out = set(), []
    for sub in _compat.flatten_layers(layer, include_self=True):
        for variable in _compat.own_trainable_variables(sub):
            if id(variable) not in seen:
                seen.add(id(variable))
                out.append(variable)
    return out
