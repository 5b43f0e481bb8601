"""The one check of class labels, shared by extraction, heads and recipes,
and the weights that make classes of unequal size count alike."""

import numpy as np

__all__ = ["IMBALANCE", "balancing", "check_labels"]

# Classes are weighted to count alike once the largest has at least this
# many times the images of the smallest.
IMBALANCE = 3.0


def check_labels(labels, num_classes=None, argument="labels"):
    """Integer class labels `(N,)` as int64, or a `ValueError` that says why not.

    Accepts integer arrays and integer-valued floats (`1.0`), shaped `(N,)`
    or `(N, 1)`. Refuses strings, one-hot rows, fractions (`1.9` is not
    truncated to `1`), negatives, and, given `num_classes`, labels outside
    `[0, num_classes)`.

    Example:

    >>> keras_transfer.labels.check_labels([0.0, 2.0, 1.0], num_classes=3).tolist()
    [0, 2, 1]

    Args:
        labels: the labels.
        num_classes: the number of classes, or `None` (any non-negative).
        argument: the argument's name, for error messages.
    """
    array = np.asarray(labels)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim == 2 and array.shape[1] > 1:
        raise ValueError(
            f"`{argument}` must be integer class indices, not one-hot rows. Received: "
            f"{argument} of shape {array.shape}; pass {argument}.argmax(-1)"
        )
    if array.ndim != 1:
        raise ValueError(
            f"`{argument}` must be a 1D array of class indices. Received: {argument} of "
            f"shape {array.shape}"
        )
    if array.dtype.kind not in "biuf":
        sample = array[:3].tolist()
        raise ValueError(
            f"`{argument}` must be integer class indices. Received: {argument} of dtype "
            f"{array.dtype} ({sample}...); map class names to 0..num_classes-1 first"
        )
    if array.dtype.kind == "f":
        bad = ~np.isfinite(array) | (array != np.round(array))
        if bad.any():
            raise ValueError(
                f"The labels of `{argument}` must be integer class indices; integer-valued "
                "floats such as 1.0 are accepted. Received: the label at index "
                f"{int(np.argmax(bad))} is {array[np.argmax(bad)].item()!r}"
            )
    array = array.astype("int64")
    if len(array):
        low, high = int(array.min()), int(array.max())
        limit = num_classes if num_classes is not None else None
        if low < 0 or (limit is not None and high >= limit):
            allowed = f"[0, {limit})" if limit is not None else "0 or more"
            raise ValueError(
                f"`{argument}` must be class indices in {allowed}. Received: labels from "
                f"{low} to {high}"
            )
    return array


def balancing(labels, num_classes, balance="auto"):
    """`(weights, why)`: each class's weight, so that every class present
    counts alike (`n / (k * n_c)` for `k` classes present, `n` images, `n_c`
    of class `c`: the images' mean weight stays 1), or `None` for equal
    images; `why` says which, and why.

    Example:

    >>> weights, why = keras_transfer.labels.balancing([0] * 8 + [1] * 2, 2)
    >>> weights.tolist(), why.split(":")[0]
    ([0.625, 2.5], 'balanced')

    Args:
        labels: the training images' class indices.
        num_classes: the model's classes.
        balance: `"auto"` (weights once the largest class has `IMBALANCE`
            times the images of the smallest), `True` (always) or `False`
            (never).
    """
    if not (balance == "auto" or isinstance(balance, bool)):
        raise ValueError(f"`balance` must be 'auto', True or False. Received: balance={balance!r}")
    counts = np.bincount(np.asarray(labels, "int64"), minlength=num_classes)
    present = counts[counts > 0]
    ratio = float(present.max() / present.min()) if len(present) else 1.0
    sizes = f"({int(present.max())} and {int(present.min())})" if len(present) else ""
    if balance is False:
        return None, "off: balance=False"
    if balance == "auto" and ratio < IMBALANCE:
        return None, (
            f"not needed: the largest class has {ratio:.1f} times the images of the smallest "
            f"{sizes}, under {IMBALANCE}"
        )
    weights = np.where(counts > 0, counts.sum() / (len(present) * np.maximum(counts, 1)), 0.0)
    if balance is True:
        return weights, "balanced: balance=True"
    return weights, (
        f"balanced: the largest class has {ratio:.1f} times the images of the smallest "
        f"{sizes}, at least {IMBALANCE}"
    )
