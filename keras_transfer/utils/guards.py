"""Checks at the door, as Keras's `fit` and scikit-learn's estimators make
them: data that ends, values that are finite, rates that can train, and a
fit that stops, and says where, when its loss stops being a number."""

import math
import os

import keras
import numpy as np

__all__ = [
    "MEMORY_SHARE",
    "NonFiniteLossError",
    "StopOnNonFiniteLoss",
    "check_batch_size",
    "check_finite_length",
    "check_finite_values",
    "check_learning_rate",
    "memory_budget",
]

# A whole-dataset reader of data of unknown length keeps at most this share
# of the memory that is free when it starts, then stops with an error.
MEMORY_SHARE = 0.5


class NonFiniteLossError(RuntimeError):
    """A fit whose loss became NaN or infinite: the model it made is broken."""


def check_finite_length(data, argument, instead):
    """Refuses data that never ends, before any of it is read.

    `tf.data` with `INFINITE_CARDINALITY` (a `.repeat()` without a count),
    and a `keras.utils.PyDataset` without a length (`num_batches` is
    `None`), are refused. Data of unknown length (generators, `tf.data`
    after `filter`) passes: its reader bounds what it keeps.

    Example:

    >>> keras_transfer.guards.check_finite_length(np.zeros((2, 4)), "x", "arrays")

    Args:
        data: what the caller was given.
        argument: its name, for the error.
        instead: what to pass instead, for the error.
    """
    if hasattr(data, "cardinality") and hasattr(data, "as_numpy_iterator"):
        if int(data.cardinality()) == -1:  # tf.data.INFINITE_CARDINALITY
            raise ValueError(
                f"`{argument}` is an infinite tf.data.Dataset (a .repeat() without a count?): "
                f"it would be read forever. Pass {argument}.take(n) for n batches, or "
                f"{instead}. Received: {argument} of cardinality INFINITE"
            )
    elif isinstance(data, keras.utils.PyDataset):
        try:
            batches = data.num_batches
        except NotImplementedError:
            batches = None
        if batches is None:
            raise ValueError(
                f"`{argument}` is a PyDataset without a length (`num_batches` is None, so Keras "
                f"reads it as infinite): it would be read forever. Give it a `num_batches` or "
                f"`__len__`, or pass {instead}. Received: {argument} of type "
                f"{type(data).__name__}"
            )


def check_finite_values(array, argument, what="pixels"):
    """Refuses NaN or infinite values with their count and the first index.

    Example:

    >>> keras_transfer.guards.check_finite_values(np.ones((2, 3)), "x")

    Args:
        array: a NumPy array (integer arrays always pass).
        argument: its name, for the error.
        what: what its values are, for the error.
    """
    array = np.asarray(array)
    if array.dtype.kind not in "fc":
        return
    # In slices of about 16M values: a mask of the whole would be as large as
    # a probe's feature matrix is in float32, over again.
    step = max(1, (1 << 24) // max(int(np.prod(array.shape[1:])), 1))
    slices = (array[i : i + step] for i in range(0, len(array), step)) if array.ndim else ()
    if array.ndim and all(np.isfinite(part).all() for part in slices):
        return
    finite = np.isfinite(array)
    if finite.all():
        return
    bad = np.argwhere(~finite)
    first = tuple(int(i) for i in bad[0])
    raise ValueError(
        f"`{argument}` holds {len(bad)} NaN or Inf {what}; the first at index "
        f"{first[0] if len(first) == 1 else first}. Anything computed from them is NaN: fix "
        f"or drop those rows. Received: {argument}[{', '.join(map(str, first))}]="
        f"{array[first].item()!r}"
    )


def check_learning_rate(value, argument="learning_rate"):
    """A learning rate must be a finite number above zero.

    Example:

    >>> keras_transfer.guards.check_learning_rate(1e-3)
    0.001
    """
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, bool):
        raise ValueError(f"`{argument}` must be a number. Received: {argument}={value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(
            f"`{argument}` must be a finite number above 0. Received: {argument}={value!r}"
        )
    return float(value)


def check_batch_size(value, argument="batch_size"):
    """`None` (the caller's default) or a positive int.

    Example:

    >>> keras_transfer.guards.check_batch_size(32)
    32
    """
    if value is None:
        return None
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(
            f"`{argument}` must be a positive integer or None. Received: {argument}={value!r}"
        )
    return int(value)


def memory_budget():
    """Bytes a whole-dataset reader may keep: `MEMORY_SHARE` of the memory
    free now (on a system that does not say, 4 GiB)."""
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not POSIX
        free = 8 << 30
    return int(MEMORY_SHARE * free)


class StopOnNonFiniteLoss(keras.callbacks.TerminateOnNaN):
    """Keras's `TerminateOnNaN`, which also remembers where the loss failed,
    so that the caller can raise instead of returning a broken model.

    Example:

    >>> stop = keras_transfer.guards.StopOnNonFiniteLoss()
    >>> stop.check("the fit")  # nothing failed: no error

    Args:
        restore: weights (`model.get_weights()`) that `check` puts back
            before it raises, or `None`.

    Attributes:
        failed: `None`, or `(epoch, batch, loss)` of the first bad batch
            (both counted from 0).
    """

    def __init__(self, restore=None):
        super().__init__()
        self.restore, self.epoch, self.failed = restore, 0, None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or self.failed is not None:
            return
        loss = float(np.asarray(keras.ops.convert_to_numpy(loss)))
        if not math.isfinite(loss):
            self.failed = (self.epoch, batch, loss)
            self.model.stop_training = True

    def check(self, what):
        """Raises `NonFiniteLossError` if the loss failed during `what`."""
        if self.failed is None:
            return
        epoch, batch, loss = self.failed
        if self.restore is not None:
            self.model.set_weights(self.restore)
        raise NonFiniteLossError(
            f"{what} stopped: the training loss became {loss} in epoch {epoch + 1}, batch "
            f"{batch + 1}. The model it made is broken and was not kept. Lower the learning "
            "rate, or check the data for extreme values."
        )
