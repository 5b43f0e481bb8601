"""The fixed recipe of `fine_tune` (fastai's): the head, then everything
under per-block rates and one cycle."""

import keras

from keras_transfer import precision
from keras_transfer.schedules import OneCycle
from keras_transfer.steps import tune_steps_per_execution

__all__ = []


def _auto_steps_per_execution(model, steps_per_execution, x, y, batch_size, compile_args):
    if steps_per_execution == "auto" and precision.accelerator()[0] != "cpu":
        compile_args["steps_per_execution"] = tune_steps_per_execution(
            model, x, y, batch_size=batch_size or 32
        )


def _scheduled_rate(schedule, peak, total_steps, **kwargs):
    if schedule == "constant":
        return peak
    return OneCycle(peak, max(int(total_steps), 1), **kwargs)


def _merged_history(model, histories, phases):
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
