"""The learning-rate range test: `lr_find` (Smith, 2015; fastai's
`lr_find`) and its `LRFinderResult`."""

import math

import keras
import numpy as np

from keras_transfer.recipes.schedules import ExponentialRange
from keras_transfer.recipes.steps import batches_per_epoch
from keras_transfer.utils import _compat

__all__ = ["LRFinderResult", "lr_find"]


def lr_find(
    model, data, start=1e-7, end=10.0, steps=100, *, batch_size=None, stop_factor=4.0, beta=0.98
):
    """The learning-rate range test (Smith, 2015; fastai's `lr_find`).

    Trains for up to `steps` batches while the rate grows exponentially from
    `start` to `end`, recording the smoothed loss, and stops early when the
    loss diverges. Afterwards the model's weights, its optimizer (state
    included) and its train step are restored exactly.

    Example:

    >>> backbone = keras.Sequential([keras.Input((16, 16, 3)),
    ...     keras.layers.Conv2D(4, 3, name="conv_a"), keras.layers.Conv2D(4, 3, name="conv_b")])
    >>> model = keras_transfer.transfer(backbone, 2, preprocessing="unit")
    >>> model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    >>> x, y = np.zeros((16, 16, 16, 3)), np.arange(16) % 2
    >>> result = keras_transfer.lr_find(model, (x, y), steps=4, batch_size=4)
    >>> len(result.learning_rates) <= 4
    True

    Args:
        model: a compiled model.
        data: what `fit` takes as `x`, or a pair `(x, y)` of arrays.
        start, end: the first and last learning rate.
        steps: the number of batches (the data is repeated as needed).
        batch_size: for array input.
        stop_factor: stop once the smoothed loss exceeds this times its best.
        beta: the loss's exponential smoothing.

    Returns:
        An `LRFinderResult`: `learning_rates`, `losses`, `suggestion`,
        `plot()`.
    """
    if not getattr(model, "compiled", False) or getattr(model, "optimizer", None) is None:
        raise ValueError(
            "lr_find needs a compiled model: call model.compile(optimizer, loss) "
            "first. Received: a model that is not compiled."
        )
    if not (0 < start < end < math.inf) or not isinstance(steps, int) or steps < 2:
        raise ValueError(
            "lr_find needs 0 < start < end and an int steps >= 2. Received: "
            f"start={start!r}, end={end!r}, steps={steps!r}"
        )
    x, y = data if isinstance(data, tuple) else (data, None)
    weights = [np.array(keras.ops.convert_to_numpy(v)) for v in model.weights]
    optimizer, train_function = model.optimizer, model.train_function
    stored = _compat.compile_config(model).get("optimizer")
    state = [np.array(keras.ops.convert_to_numpy(v)) for v in optimizer.variables]
    built = optimizer.built
    # A fresh copy of the optimizer whose rate follows the range test.
    rate = ExponentialRange(start, end, steps)
    probe = keras.optimizers.deserialize(_with_rate(keras.optimizers.serialize(optimizer), rate))
    recorder = _RangeTest(rate, steps, stop_factor, beta)
    try:
        probe.build(model.trainable_variables)
        model.optimizer, model.train_function = probe, None
        per_epoch = batches_per_epoch(x, y, batch_size, default=steps)
        model.fit(
            x,
            y,
            batch_size=batch_size,
            epochs=math.ceil(steps / per_epoch),
            callbacks=[recorder],
            verbose=0,
        )
    finally:
        for variable, value in zip(model.weights, weights):
            variable.assign(value)
        model.optimizer = optimizer
        _compat.compile_config(model)["optimizer"] = stored
        if built:
            for variable, value in zip(optimizer.variables, state):
                variable.assign(value)
        model.train_function = train_function
    return LRFinderResult(recorder.rates, recorder.losses)


class LRFinderResult:
    """The curve of an LR range test and the rate it suggests.

    Attributes:
        learning_rates: the rate of each recorded step.
        losses: the smoothed training loss at each step.
        suggestion: the rate where the loss falls fastest (steepest negative
            slope against log rate, leaving out the first `skip_start` and
            last `skip_end` steps), fastai's "steep" suggestion.
        minimum: the rate at the lowest loss, divided by 10.
    """

    def __init__(self, learning_rates, losses, skip_start=None, skip_end=None):
        self.learning_rates = list(learning_rates)
        self.losses = list(losses)
        lrs, losses = np.array(self.learning_rates), np.array(self.losses)
        # As fastai, ignore the first steps (the smoothing's warm-up) and the
        # last ones (divergence) when looking for the steepest descent.
        count = len(lrs)
        skip_start = min(10, count // 4) if skip_start is None else skip_start
        skip_end = min(5, count // 8) if skip_end is None else skip_end
        window = slice(skip_start, count - skip_end)
        if count - skip_start - skip_end >= 3:
            slopes = np.gradient(losses[window], np.log(lrs[window]))
            self.suggestion = float(lrs[window][int(np.argmin(slopes))])
            self.minimum = float(lrs[int(np.argmin(losses))] / 10)
        else:
            self.suggestion = self.minimum = None

    def plot(self, ax=None, suggest=True):
        """Draws loss against learning rate (log scale); returns the Axes."""
        try:
            import matplotlib.pyplot as plt
        except ImportError as error:
            raise ImportError(
                "LRFinderResult.plot needs matplotlib: pip install "
                "'keras-transfer[plot]' (or matplotlib)."
            ) from error
        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot(self.learning_rates, self.losses)
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss (smoothed)")
        if suggest and self.suggestion is not None:
            ax.axvline(
                self.suggestion,
                color="C1",
                linestyle="--",
                label=f"suggestion {self.suggestion:.2e}",
            )
            ax.legend()
        return ax

    def __repr__(self):
        return (
            f"LRFinderResult(steps={len(self.losses)}, "
            f"suggestion={self.suggestion!r}, minimum={self.minimum!r})"
        )


class _RangeTest(keras.callbacks.Callback):
    """Records each batch's loss (recovered from the epoch's running mean).

    The rate itself is a schedule, not set here: under JAX a callback cannot
    reach the optimizer's state mid-epoch.
    """

    def __init__(self, rate, steps, stop_factor, beta):
        super().__init__()
        self.rate, self.steps = rate, steps
        self.stop_factor, self.beta = stop_factor, beta
        self.rates, self.losses = [], []
        self._step, self._average, self._best = 0, 0.0, math.inf

    def on_epoch_begin(self, epoch, logs=None):
        self._seen, self._mean = 0, 0.0

    def on_train_batch_end(self, batch, logs=None):
        mean = float(keras.ops.convert_to_numpy(logs["loss"]))
        loss = mean * (self._seen + 1) - self._mean * self._seen
        self._seen, self._mean = self._seen + 1, mean
        self._average = self.beta * self._average + (1 - self.beta) * loss
        smooth = self._average / (1 - self.beta ** (self._step + 1))
        self.rates.append(float(keras.ops.convert_to_numpy(self.rate(self._step))))
        self.losses.append(smooth)
        self._best = min(self._best, smooth)
        self._step += 1
        if (
            self._step >= self.steps
            or not math.isfinite(smooth)
            or (smooth > self.stop_factor * self._best)
        ):
            self.model.stop_training = True


def _with_rate(config, rate):
    """An optimizer config whose (innermost) rate is `rate`."""
    inner = config["config"]
    for key in ("optimizer", "inner_optimizer"):
        if key in inner:
            inner[key] = _with_rate(inner[key], rate)
            return config
    inner["learning_rate"] = keras.optimizers.schedules.serialize(rate)
    return config
