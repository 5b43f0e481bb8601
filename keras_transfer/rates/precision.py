"""Mixed precision: which policy a device wants, and building under it.

bfloat16 has float32's range, so it needs no loss scaling; it is fast on
TPUs and on NVIDIA GPUs from Ampere (compute capability 8.0) on. Older GPUs
get float16, and Keras's `compile` wraps the optimizer in a
`LossScaleOptimizer` for a `"mixed_float16"` model. A CPU has no fast
half-precision path: there, "auto" is float32.
"""

import keras

from keras_transfer.backbones.hub import HubLayer
from keras_transfer.utils import _compat
from keras_transfer.utils._options import PRECISION_POLICIES as POLICIES

__all__ = ["POLICIES", "accelerator", "apply", "resolve"]


def accelerator():
    """`("gpu", capability)`, `("tpu", None)` or `("cpu", None)`: the
    device Keras computes on (the torch backend has no
    `keras.distribution.list_devices`, so each backend is asked)."""
    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax

            device = jax.devices()[0]
            if device.platform == "gpu":
                return "gpu", _capability(getattr(device, "compute_capability", None))
            return ("tpu" if device.platform == "tpu" else "cpu"), None
        if backend == "torch":
            import torch

            if torch.cuda.is_available():
                return "gpu", tuple(torch.cuda.get_device_capability(0))
            return "cpu", None
        if backend == "tensorflow":
            import tensorflow as tf

            if tf.config.list_logical_devices("TPU"):
                return "tpu", None
            gpus = tf.config.list_physical_devices("GPU")
            if gpus:
                details = tf.config.experimental.get_device_details(gpus[0])
                return "gpu", _capability(details.get("compute_capability"))
    except (ImportError, RuntimeError):
        pass
    return "cpu", None


def _capability(value):
    # "9.0" on JAX, (9, 0) on TensorFlow; None for an unknown card, which
    # gets float16: safe on every CUDA GPU.
    if value is None:
        return None
    parts = value if isinstance(value, (tuple, list)) else str(value).split(".")
    return tuple(int(p) for p in parts)


def resolve(mixed_precision):
    """The dtype policy name for a `mixed_precision` argument.

    Example:

    >>> keras_transfer.precision.resolve("mixed_float16")
    'mixed_float16'

    Args:
        mixed_precision: `"auto"` (the global policy if one was set, else
            the device's best: bfloat16 on TPUs and GPUs of compute
            capability 8.0 and up, float16 on older GPUs, float32 on CPU),
            `None` (the global policy as it is), or a policy name in
            `POLICIES`.
    """
    if mixed_precision is None:
        return keras.mixed_precision.global_policy().name
    if mixed_precision == "auto":
        current = keras.mixed_precision.global_policy().name
        if current != "float32":
            return current  # the user chose one for the whole program
        kind, capability = accelerator()
        if kind == "tpu" or (kind == "gpu" and capability and capability >= (8, 0)):
            return "mixed_bfloat16"
        return "mixed_float16" if kind == "gpu" else "float32"
    if mixed_precision not in POLICIES:
        raise ValueError(
            f"`mixed_precision` must be 'auto', None or one of {POLICIES}. "
            f"Received: mixed_precision={mixed_precision!r}"
        )
    return mixed_precision


def apply(model, policy):
    """Sets a mixed `policy` on every layer of a built model (a user's
    backbone), but its inputs and TF-Hub layers; `"float32"` leaves the
    model as it is.

    Variables stay float32 under a mixed policy, so built layers take it.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> keras_transfer.precision.apply(model, "mixed_bfloat16")
    >>> model.layers[0].compute_dtype, model.layers[0].variable_dtype
    ('bfloat16', 'float32')

    Args:
        model: a built Keras model.
        policy: a dtype policy name.
    """
    if policy == "float32":
        return
    for layer in _compat.flatten_layers(model):
        # A SavedModel's graph is float32 inside: it keeps its policy.
        if not isinstance(layer, (keras.layers.InputLayer, HubLayer)):
            layer.dtype_policy = policy
