"""Gradual unfreezing as a recipe in one call (ULMFiT): the head first,
then the backbone a block at a time from the top, in one `fit`."""

import keras
import numpy as np

from keras_transfer import strategies
from keras_transfer.recipes.callbacks import GradualUnfreezing
from keras_transfer.recipes.fixed import balance_fit
from keras_transfer.utils import guards
from keras_transfer.utils.labels import check_labels

__all__ = ["gradual_unfreeze"]

# The strategy table holds the defaults, for the command line too.
_DEFAULTS = dict(strategies.get("gradual").defaults)


def gradual_unfreeze(
    model,
    train,
    validation_data=None,
    *,
    epochs=_DEFAULTS["epochs"],
    freeze_epochs=_DEFAULTS["freeze_epochs"],
    base_lr=_DEFAULTS["base_lr"],
    lr_factor=None,
    batch_size=None,
    verbose="auto",
    callbacks=None,
    balance="auto",
):
    """Trains `model` in place by gradual unfreezing.

    The model is compiled with Adam at `base_lr` and sparse categorical
    cross-entropy on logits. Only the head trains for `freeze_epochs`; then
    `ktr.callbacks.GradualUnfreezing` unfreezes one more block from the top
    at each of the `epochs` that follow. A loss that becomes NaN or
    infinite stops the fit and raises `ktr.guards.NonFiniteLossError`.

    Example:

    >>> backbone = keras.Sequential([keras.Input((16, 16, 3)),
    ...     keras.layers.Conv2D(4, 3, name="conv_a"), keras.layers.Conv2D(4, 3, name="conv_b")])
    >>> model = keras_transfer.transfer(backbone, 2, preprocessing="unit")
    >>> x, y = np.zeros((8, 16, 16, 3)), np.arange(8) % 2
    >>> history = keras_transfer.gradual_unfreeze(model, (x, y), epochs=2, verbose=0)
    >>> [phase["name"] for phase in history.phases], history.epoch
    (['head', 'gradual unfreezing'], [0, 1, 2])

    Args:
        model: a model built by `transfer(..., num_classes=N)` (or with
            findable blocks), its classifier giving logits.
        train: what `fit` takes as `x` (a dataset), or a pair `(x, y)`.
        validation_data: passed to `fit`.
        epochs: epochs after the head-only ones, one more block each (0:
            the head only).
        freeze_epochs: head-only epochs first.
        base_lr: Adam's learning rate.
        lr_factor: discriminative rates: the block `k` steps below the head
            trains at `lr_factor**k` times the rate (see `GradualUnfreezing`).
        batch_size: for array input.
        verbose, callbacks: passed to `fit`.
        balance: `"auto"`, `True` or `False`: whether classes of unequal
            size are weighted to count alike, as in `fine_tune`.

    Returns:
        The `History`, with `phases` and `balance` (which was used, and why).
    """
    for name, value, low in (("epochs", epochs, 0), ("freeze_epochs", freeze_epochs, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"`{name}` must be an int >= {low}. Received: {name}={value!r}")
    if not epochs + freeze_epochs:
        raise ValueError(
            "Nothing to train: `epochs` and `freeze_epochs` are both 0. Received: 0, 0"
        )
    guards.check_learning_rate(base_lr, "base_lr")
    batch_size = guards.check_batch_size(batch_size)
    x, y = train if isinstance(train, tuple) else (train, None)
    guards.check_finite_length(x, "train", "a finite dataset (train.take(n))")
    if isinstance(x, np.ndarray):
        guards.check_finite_values(x, "train", "pixels")
    if y is not None:
        y = check_labels(y, max(int(model.outputs[0].shape[-1]), 2), argument="train")
    model.compile(
        keras.optimizers.Adam(base_lr),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    weighting = {}
    balanced = balance_fit(model, x, y, balance, weighting)
    stop = guards.StopOnNonFiniteLoss()
    unfreezing = GradualUnfreezing(
        start_epoch=freeze_epochs, lr_factor=lr_factor, verbose=0 if verbose == 0 else 1
    )
    history = model.fit(
        x,
        y,
        batch_size=batch_size,
        epochs=freeze_epochs + epochs,
        validation_data=validation_data,
        verbose=verbose,
        callbacks=[stop, *(callbacks or []), unfreezing],
        **weighting,
    )
    stop.check("Gradual unfreezing")
    history.phases = [
        {"name": "head", "first_epoch": 0, "epochs": freeze_epochs},
        {"name": "gradual unfreezing", "first_epoch": freeze_epochs, "epochs": epochs},
    ]
    history.balance = balanced
    return history
