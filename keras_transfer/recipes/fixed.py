"""The fixed recipe of `fine_tune` (fastai's): the head, then everything
under per-block rates and one cycle."""

import math

import keras
import numpy as np

from keras_transfer import strategies
from keras_transfer.backbones.backbone_model import blocks_of
from keras_transfer.rates import freezing, precision
from keras_transfer.rates.optimizers import BlockwiseLR
from keras_transfer.rates.rate_multipliers import block_multipliers, recipe_multipliers
from keras_transfer.recipes.schedules import OneCycle
from keras_transfer.recipes.steps import batches_per_epoch, tune_steps_per_execution
from keras_transfer.utils import guards, multi_worker
from keras_transfer.utils.labels import balancing, check_labels

__all__ = ["SCHEDULES", "balance_fit", "fixed_fine_tune", "merged_history"]

SCHEDULES = ("one_cycle", "constant")


def fixed_fine_tune(
    model,
    train,
    validation_data=None,
    *,
    epochs=None,
    freeze_epochs=None,
    base_lr=None,
    lr_mult=None,
    schedule=None,
    callbacks=None,
    bn=None,
    batch_size=None,
    steps_per_epoch=None,
    steps_per_execution="auto",
    verbose="auto",
    compile_args,
    balance="auto",
    **fit_kwargs,
):
    """Runs the fixed recipe on `model` in place and returns a `History` with
    `phases`. `fine_tune(model, train, adaptive=False)` calls it; its
    docstring describes the recipe.

    Args:
        compile_args: `compile`'s loss and metrics.
        The others: as for `fine_tune`.
    """
    row = strategies.get("fine_tune")  # the defaults, for the command line too
    epochs = row.default("epochs") if epochs is None else epochs
    freeze_epochs = row.default("freeze_epochs") if freeze_epochs is None else freeze_epochs
    base_lr = row.default("base_lr") if base_lr is None else base_lr
    lr_mult_given = lr_mult is not None
    lr_mult = 100 if lr_mult is None else lr_mult
    schedule = "one_cycle" if schedule is None else schedule
    for name, value, low in (("epochs", epochs, 1), ("freeze_epochs", freeze_epochs, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"`{name}` must be an int >= {low}. Received: {name}={value!r}")
    if schedule not in SCHEDULES:
        raise ValueError(f"`schedule` must be one of {SCHEDULES}. Received: schedule={schedule!r}")
    guards.check_learning_rate(base_lr, "base_lr")
    if (
        not isinstance(lr_mult, (int, float, np.integer, np.floating))
        or isinstance(lr_mult, bool)
        or not 1 <= lr_mult < math.inf
    ):
        raise ValueError(f"`lr_mult` must be a finite number >= 1. Received: lr_mult={lr_mult!r}")
    blocks_of(model)  # fails early, and clearly, without blocks
    multi_worker.patch_if_needed()
    x, y = train if isinstance(train, tuple) else (train, None)
    if steps_per_epoch is None:
        guards.check_finite_length(x, "train", "steps_per_epoch=N")
    if isinstance(x, np.ndarray):
        guards.check_finite_values(x, "train", "pixels")
    if y is not None:
        # One output is a binary (sigmoid) head: labels 0 and 1.
        y = check_labels(y, max(int(model.outputs[0].shape[-1]), 2), argument="train")
    steps = steps_per_epoch or batches_per_epoch(x, y, batch_size)
    balanced = balance_fit(model, x, y, balance, fit_kwargs)
    # A non-finite loss puts the weights back as they came, then raises.
    stop = guards.StopOnNonFiniteLoss(restore=model.get_weights())
    if steps_per_execution != "auto":
        compile_args["steps_per_execution"] = steps_per_execution
    fit_args = dict(
        x=x,
        y=y,
        batch_size=batch_size,
        validation_data=validation_data,
        steps_per_epoch=steps_per_epoch,
        callbacks=[stop, *(callbacks or [])],
        verbose=verbose,
        **fit_kwargs,
    )
    histories, phases = [], []

    if freeze_epochs:
        freezing.freeze(model)
        rate = _scheduled_rate(schedule, base_lr, freeze_epochs * steps, pct_start=0.99)
        model.compile(optimizer=keras.optimizers.Adam(rate), **compile_args)
        _auto_steps_per_execution(model, steps_per_execution, x, y, batch_size, compile_args)
        histories.append(model.fit(epochs=freeze_epochs, **fit_args))
        stop.check("fine_tune's head phase (the model's weights are put back)")
        phases.append({"name": "head", "first_epoch": 0, "epochs": freeze_epochs})

    # fastai halves the rate once the whole network trains.
    head_lr = base_lr / 2 if freeze_epochs else base_lr
    freezing.unfreeze(model, "all", bn=bn)
    if lr_mult_given:
        multipliers = block_multipliers(model, lr_range=(head_lr / lr_mult, head_lr))
    else:
        multipliers = recipe_multipliers(model, lr_range=(head_lr / lr_mult, head_lr))
    rate = _scheduled_rate(schedule, head_lr, epochs * steps, pct_start=0.3, div=5.0)
    optimizer = BlockwiseLR(keras.optimizers.Adam(rate), multipliers, strict=False)
    model.compile(optimizer=optimizer, **compile_args)
    if not freeze_epochs:
        _auto_steps_per_execution(model, steps_per_execution, x, y, batch_size, compile_args)
    histories.append(
        model.fit(epochs=freeze_epochs + epochs, initial_epoch=freeze_epochs, **fit_args)
    )
    stop.check("fine_tune's unfrozen phase (the model's weights are put back)")
    phases.append({"name": "unfrozen", "first_epoch": freeze_epochs, "epochs": epochs})
    history = merged_history(model, histories, phases)
    history.balance = balanced
    return history


def balance_fit(model, x, y, balance, fit_kwargs):
    """Sets `fit_kwargs`' `class_weight` when classes are balanced; returns
    the record of which was used. The user's own `class_weight` wins."""
    labels = y if y is not None else getattr(x, "labels", None)
    if "class_weight" in fit_kwargs:
        return {"used": True, "why": "the class_weight given", "class_weights": None}
    if labels is None:
        balancing(np.zeros(0, "int64"), 1, balance)  # checks the argument
        return {
            "used": False,
            "why": "the labels are not known before training",
            "class_weights": None,
        }
    weights, why = balancing(labels, max(int(model.outputs[0].shape[-1]), 2), balance)
    if weights is not None:
        fit_kwargs["class_weight"] = dict(enumerate(weights))
    weights = None if weights is None else weights.round(4).tolist()
    return {"used": weights is not None, "why": why, "class_weights": weights}


def _auto_steps_per_execution(model, steps_per_execution, x, y, batch_size, compile_args):
    if steps_per_execution == "auto" and precision.accelerator()[0] != "cpu":
        compile_args["steps_per_execution"] = tune_steps_per_execution(
            model, x, y, batch_size=batch_size or 32
        )


def _scheduled_rate(schedule, peak, total_steps, **kwargs):
    if schedule == "constant":
        return peak
    return OneCycle(peak, max(int(total_steps), 1), **kwargs)


def merged_history(model, histories, phases):
    """One `History` of several fits of `model`, one after the other, with
    `phases`; a metric one fit lacks is `None` for its epochs.

    Example:

    >>> a, b = keras.callbacks.History(), keras.callbacks.History()
    >>> a.epoch, a.history, b.epoch, b.history = [0], {"loss": [1.0]}, [1], {"loss": [0.5]}
    >>> a.params = b.params = {}
    >>> keras_transfer.recipes.fixed.merged_history(None, [a, b], []).history
    {'loss': [1.0, 0.5]}
    """
    history = keras.callbacks.History()
    history.set_model(model)
    history.params = histories[-1].params
    history.epoch = [e for h in histories for e in h.epoch]
    keys = []
    for h in histories:
        keys += [k for k in h.history if k not in keys]
    history.history = {
        key: [v for h in histories for v in h.history.get(key, [None] * len(h.epoch))]
        for key in keys
    }
    history.phases = phases
    return history
