"""L2-SP: pull fine-tuned weights toward their pretrained values.

Li, Grandvalet and Davoine, "Explicit Inductive Bias for Transfer Learning
with Convolutional Networks", ICML 2018:
`alpha/2 * ||w_S - w_S^0||^2 + beta/2 * ||w_new||^2`, where `w_S` are the
backbone's weights, `w_S^0` their values when the regulariser is attached,
and `w_new` the kernels of the new head.
"""

import math

import keras

from keras_transfer.backbones.backbone_model import find_backbones
from keras_transfer.backbones.penalties import HalfL2, StartingPoint, candidate_variables
from keras_transfer.utils import _compat

__all__ = ["HalfL2", "L2SP", "StartingPoint", "get"]


class L2SP:
    """L2-SP for a model built by `transfer()`.

    `attach(model)` gives every backbone weight a penalty toward its current
    (pretrained) value, and every head kernel a plain L2 penalty. Keras adds
    them to the loss of `fit` for the weights that are trainable. Use it
    through `transfer(..., regularization="l2sp")` or
    `ktr.unfreeze(..., regularization=L2SP(...))`.

    Example:

    >>> backbone = keras.Sequential([keras.Input((16, 16, 3)),
    ...     keras.layers.Conv2D(4, 3, name="conv_a"), keras.layers.Conv2D(4, 3, name="conv_b")])
    >>> model = keras_transfer.transfer(backbone, 2, strategy="fine_tune")
    >>> keras_transfer.regularizers.L2SP(alpha=0.1, beta=0.01).attach(model)
    5
    >>> len(model.losses)  # 2 kernels and 2 biases pulled to the start, the head's kernel to 0
    5

    Args:
        alpha: strength of the pull toward the pretrained weights.
        beta: strength of the L2 penalty on the head's kernels.
    """

    def __init__(self, alpha=1e-2, beta=1e-4):
        for name, value in (("alpha", alpha), ("beta", beta)):
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(
                    f"`{name}` must be a finite non-negative number. Received: {name}={value!r}"
                )
        self.alpha = float(alpha)
        self.beta = float(beta)

    def attach(self, model):
        """Attaches the penalties; returns the number of variables covered."""
        backbones = find_backbones(model)
        if not backbones:
            raise ValueError(
                "L2-SP needs to know which weights are pretrained: pass a model "
                "built by keras_transfer.transfer(). Received: model "
                f"{getattr(model, 'name', model)!r} with no BackboneModel inside."
            )
        inside = {id(v) for backbone in backbones for v in candidate_variables(backbone)}
        # The head's penalty goes on its layers too, so it is in their saved
        # config; the backbone's starting point is saved by BackboneModel.
        owners = {
            id(v): layer
            for layer in _compat.flatten_layers(model)
            for v in _compat.own_trainable_variables(layer)
        }
        count = 0
        for variable in candidate_variables(model):
            if id(variable) in inside:
                variable.regularizer = StartingPoint(
                    self.alpha, keras.ops.convert_to_numpy(variable)
                )
            elif variable.path.endswith("kernel") and self.beta:
                variable.regularizer = HalfL2(self.beta)
                owner = owners.get(id(variable))
                if hasattr(owner, "kernel_regularizer"):
                    owner.kernel_regularizer = variable.regularizer
            else:
                continue
            count += 1
        return count

    def get_config(self):
        return {"alpha": self.alpha, "beta": self.beta}


def get(identifier):
    """`"l2sp"`, an `L2SP`, or None."""
    if identifier is None or isinstance(identifier, L2SP):
        return identifier
    if identifier == "l2sp":
        return L2SP()
    raise ValueError(
        "`regularization` must be None, 'l2sp' or a "
        f"keras_transfer.regularizers.L2SP. Received: regularization={identifier!r}"
    )
