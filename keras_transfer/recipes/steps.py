"""How many steps: batches per epoch of `fit`'s input, and
`tune_steps_per_execution`."""

import math
import time

import keras
import numpy as np

from keras_transfer.utils import _compat

__all__ = ["batches_per_epoch", "tune_steps_per_execution"]


def batches_per_epoch(x, y, batch_size, default=None):
    """Batches per epoch of `fit`'s input, from Keras's own data adapter."""
    try:
        count = _compat.trainer_data_batches(x, y, batch_size or 32)
    except Exception:  # noqa: BLE001 - generators and unknown types
        count = None
    if count is None or count <= 0:
        if default is not None:
            return default
        raise ValueError(
            "Cannot tell how many batches the data holds (a generator, or a "
            "dataset of unknown cardinality): pass steps_per_epoch=..."
        )
    return int(count)


def tune_steps_per_execution(
    model, x, y=None, *, batch_size=32, target=0.05, probe=8, max_steps=64
):
    """Sets `steps_per_execution` so the host's per-step work stays under
    `target` of the step time, and returns it.

    Keras runs callbacks, the progress bar and the data iterator's Python
    once per execution. A step takes `compute + overhead / n` at
    `steps_per_execution=n`: short `fit` runs of `10 * probe` batches, at 1
    and at `probe`, twice in turn, give both terms from their fastest span
    (timed between batch ends; noise only adds time), and the smallest `n` with
    `overhead / n <= target * step` is chosen. The model's weights, BatchNorm
    statistics and optimizer state are put back afterwards. On the PyTorch
    backend, which allows only 1, it returns 1 without measuring.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> model.compile("adam", "mse")
    >>> x, y = np.zeros((64, 4)), np.zeros((64, 2))
    >>> keras_transfer.steps.tune_steps_per_execution(model, x, y, batch_size=4) >= 1
    True

    Args:
        model: a compiled model.
        x, y: training data, as for `fit` (arrays are cut to `10 * probe`
            batches; at least `2 * probe`).
        batch_size: the batch size training will use.
        target: the largest share of the step the host may take.
        probe: steps per execution of the second run.
        max_steps: the largest value returned.
    """
    if not getattr(model, "compiled", False):
        raise ValueError(
            "tune_steps_per_execution needs a compiled model: call "
            "model.compile(optimizer, loss) first. Received: a model that is not "
            "compiled."
        )
    if not 0 < target < 1:
        raise ValueError(f"`target` must be in (0, 1). Received: target={target!r}")
    if not isinstance(probe, int) or probe < 2:
        raise ValueError(f"`probe` must be an int >= 2. Received: probe={probe!r}")
    if keras.backend.backend() == "torch":
        return 1  # Keras's PyTorch trainer runs one step per execution
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    state = model.variables + model.optimizer.variables
    saved = [keras.ops.convert_to_numpy(v) for v in state]
    # Ten executions at `probe` steps each; the first (it compiles) and
    # fit's own set-up fall outside the timed span, between batch ends.
    steps = 10 * probe
    if isinstance(x, np.ndarray):
        rows = steps * batch_size
        fit_args = dict(x=x[:rows], y=None if y is None else y[:rows], batch_size=batch_size)
        steps = min(steps, math.ceil(len(x) / batch_size))
    else:
        fit_args = dict(x=x, y=y, steps_per_epoch=steps)
    seconds = {1: math.inf, probe: math.inf}
    # Two interleaved rounds (1, probe, 1, probe): a burst of load from
    # elsewhere rarely covers both runs of one count.
    for count in (1, probe) * 2:
        _set_steps_per_execution(model, count)
        ends = _BatchEnds()
        model.fit(epochs=1, verbose=0, shuffle=False, callbacks=[ends], **fit_args)
        if len(ends.times) < 2:
            raise ValueError(
                f"tune_steps_per_execution needs at least {2 * probe} batches of data. "
                f"Received: {steps} batches of {batch_size}"
            )
        # Spans of `probe` steps in both runs, and the fastest of them: a busy
        # machine only ever adds time.
        spans = np.diff(ends.times[:: probe // count])
        seconds[count] = min(seconds[count], float(np.min(spans)) / probe)
    overhead = max(seconds[1] - seconds[probe], 0.0) * probe / (probe - 1)
    compute = max(seconds[1] - overhead, 1e-9)
    chosen = min(max(math.ceil(overhead * (1 - target) / (target * compute)), 1), max_steps)
    for variable, value in zip(state, saved):
        variable.assign(value)
    _set_steps_per_execution(model, chosen)
    return chosen


class _BatchEnds(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times = []

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter())


def _set_steps_per_execution(model, steps):
    model.steps_per_execution = steps
    model.train_function = None  # made again, for the new count, by the next fit
    _compat.compile_config(model)["steps_per_execution"] = steps
