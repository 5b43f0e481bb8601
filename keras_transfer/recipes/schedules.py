"""The one-cycle learning-rate schedule (Smith, 2018; fastai's fit_one_cycle)."""

import math

import keras
from keras import ops

__all__ = ["ExponentialRange", "OneCycle"]


@keras.saving.register_keras_serializable(package="keras_transfer")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """Cosine warm-up to `max_lr`, then cosine annealing to nearly zero.

    The rate starts at `max_lr / div`, rises to `max_lr` over the first
    `pct_start` of `total_steps`, then falls to `max_lr / div_final`, as in
    fastai's `fit_one_cycle`.

    Example:

    >>> schedule = keras_transfer.schedules.OneCycle(1e-2, total_steps=100)
    >>> round(float(schedule(0)), 6), round(float(schedule(25)), 6)
    (0.0004, 0.01)

    Args:
        max_lr: the peak rate.
        total_steps: steps in the cycle; later steps stay at the final rate.
        pct_start: share of the steps spent warming up.
        div: `max_lr / div` is the first rate.
        div_final: `max_lr / div_final` is the last rate.
    """

    def __init__(self, max_lr, total_steps, pct_start=0.25, div=25.0, div_final=1e5):
        if not isinstance(total_steps, int) or total_steps < 1:
            raise ValueError(
                f"`total_steps` must be a positive int. Received: total_steps={total_steps!r}"
            )
        if not 0.0 <= pct_start <= 1.0:
            raise ValueError(f"`pct_start` must be in [0, 1]. Received: pct_start={pct_start!r}")
        if not (max_lr > 0 and div > 0 and div_final > 0):
            raise ValueError(
                "`max_lr`, `div` and `div_final` must be positive. Received: "
                f"max_lr={max_lr!r}, div={div!r}, div_final={div_final!r}"
            )
        self.max_lr = float(max_lr)
        self.total_steps = total_steps
        self.pct_start = float(pct_start)
        self.div = float(div)
        self.div_final = float(div_final)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warm = max(self.pct_start * self.total_steps, 1.0)
        cool = max(self.total_steps - warm, 1.0)
        start, top, end = self.max_lr / self.div, self.max_lr, self.max_lr / self.div_final

        def cosine(a, b, fraction):
            fraction = ops.clip(fraction, 0.0, 1.0)
            return b + (a - b) * 0.5 * (1.0 + ops.cos(math.pi * fraction))

        return ops.where(
            step < warm,
            cosine(start, top, step / warm),
            cosine(top, end, (step - warm) / cool),
        )

    def get_config(self):
        return {
            "max_lr": self.max_lr,
            "total_steps": self.total_steps,
            "pct_start": self.pct_start,
            "div": self.div,
            "div_final": self.div_final,
        }


@keras.saving.register_keras_serializable(package="keras_transfer")
class ExponentialRange(keras.optimizers.schedules.LearningRateSchedule):
    """`start * (end / start) ** (step / (steps - 1))`: the range test's rate."""

    def __init__(self, start, end, steps):
        self.start, self.end, self.steps = float(start), float(end), int(steps)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        return self.start * keras.ops.power(self.end / self.start, step / (self.steps - 1))

    def get_config(self):
        return {"start": self.start, "end": self.end, "steps": self.steps}
