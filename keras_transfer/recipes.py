"""The good defaults in one call: `fine_tune` and `lr_find` (as in fastai),
and `tune_steps_per_execution`."""

import math
import time

import keras
import numpy as np

from keras_transfer import _compat, freezing, guards, multi_worker, precision
from keras_transfer.adaptive import HOLDOUT, adaptive_fine_tune
from keras_transfer.backbone_model import blocks_of
from keras_transfer.labels import check_labels
from keras_transfer.optimizers import BlockwiseLR
from keras_transfer.schedules import OneCycle

__all__ = [
    "ExponentialRange",
    "LRFinderResult",
    "SCHEDULES",
    "fine_tune",
    "lr_find",
    "tune_steps_per_execution",
]

SCHEDULES = ("one_cycle", "constant")


def fine_tune(
    model,
    train,
    validation_data=None,
    epochs=None,
    freeze_epochs=None,
    base_lr=None,
    lr_mult=None,
    schedule=None,
    callbacks=None,
    *,
    adaptive=None,
    holdout=HOLDOUT,
    seed=None,
    bn=None,
    batch_size=None,
    steps_per_epoch=None,
    steps_per_execution="auto",
    verbose="auto",
    **fit_kwargs,
):
    """The good default in one call, as fastai's `fine_tune` is.

    **Adaptive (the default).** `fine_tune(model, train)`, with none of
    `epochs`, `freeze_epochs`, `base_lr` and `lr_mult`, adapts to the data:

    1. A stratified slice of `train` (`holdout`, 20% of each class) is set
       aside. It is the recipe's only judge.
    2. Probe: the backbone's features are extracted once (and for two
       augmented views of each image, drawn with the model's own
       `augmentation` when `transfer()` was given one), and a logistic
       regression (C by cross-validation, an image's views in one fold)
       becomes the head (LP-FT, Kumar et al. 2022).
    3. Fine-tuning from that head: everything trains for about 1,000 steps
       (3 to 10 epochs), Adam under one cycle, the head at 3e-4 and the
       stem 10x lower. After each epoch the slice is scored; the best
       epoch's weights are kept, and training stops after 3 epochs without
       a better score.
    4. The fine-tuned model is kept if it beats the probe on the slice by
       more than chance: a one-sided sign test on the images the two
       disagree on, p <= 0.2. Otherwise the probe, refitted on all of
       `train`, is the model (the backbone as it was, frozen).

    `validation_data` is never read to decide anything: it is passed to
    `fit` for its curves only, so it stays an untouched measurement. With
    fewer than two images of a class nothing is held out (a warning says
    so, and so does the decision record). Afterwards `model` holds the kept
    weights and saves and reloads like any model. `train` must be
    `(images, labels)` or a finite dataset, which is read into memory (one
    of unknown length up to half the free memory).

    Both recipes refuse data that never ends, NaN or infinite pixels, and a
    learning rate that is not a finite number above 0, before training. A
    loss that becomes NaN or infinite stops the fit: the model's weights
    are put back and `ktr.guards.NonFiniteLossError` names the epoch.

    **Fixed.** Passing any of `epochs`, `freeze_epochs`, `base_lr` or
    `lr_mult`, or `adaptive=False`, runs fastai's recipe (defaults 5, 1,
    2e-3, 100), the default before 0.1.0:

    1. The backbone is frozen and the head trains for `freeze_epochs` at
       `base_lr` (one cycle).
    2. Everything is unfrozen and trains for `epochs` more, with per-block
       learning rates spread geometrically from `base_lr / 2 / lr_mult`
       (stem) to `base_lr / 2` (head), under a one-cycle schedule.

    Both recipes use Adam. An uncompiled model is compiled with sparse
    categorical cross-entropy and accuracy; a compiled one keeps its loss
    and metrics.

    Example:

    >>> backbone = keras.Sequential([keras.Input((16, 16, 3)),
    ...     keras.layers.Conv2D(4, 3, name="conv_a"), keras.layers.Conv2D(4, 3, name="conv_b")])
    >>> model = keras_transfer.transfer(backbone, 2, preprocessing="unit")
    >>> x, y = np.zeros((8, 16, 16, 3)), np.arange(8) % 2
    >>> history = keras_transfer.fine_tune(model, (x, y), epochs=1, verbose=0)
    >>> [phase["name"] for phase in history.phases], history.epoch
    (['head', 'unfrozen'], [0, 1])
    >>> x = np.random.default_rng(0).uniform(0, 255, (12, 16, 16, 3))
    >>> history = keras_transfer.fine_tune(model, (x, np.arange(12) % 2), verbose=0, seed=0)
    >>> history.decision["kept"] in ("probe", "fine_tuned"), history.decision["holdout_images"]
    (True, 2)

    Args:
        model: a model built by `transfer()` (or with findable blocks; the
            adaptive recipe needs `transfer()`'s linear head).
        train: what `fit` takes as `x` (a dataset, a PyDataset), or a pair
            `(x, y)` of arrays.
        validation_data: passed to `fit`, for its curves only.
        epochs: epochs of the unfrozen phase (>= 1). Fixed recipe.
        freeze_epochs: epochs of the head-only phase (>= 0). Fixed recipe.
        base_lr: the head's peak learning rate. Fixed recipe.
        lr_mult: ratio between the head's and the stem's rate. Fixed recipe.
            Not given, a transformer backbone gets layer-wise decay instead:
            each block `ktr.freezing.LAYER_DECAY` (0.75) times the rate of
            the block above it, as in timm's ViT recipe (also in the
            adaptive recipe).
        schedule: `"one_cycle"` or `"constant"`. Fixed recipe.
        callbacks: passed to every `fit`.
        adaptive: `None` (adaptive unless a fixed-recipe argument is
            given), `True` or `False`.
        holdout: the share of each class the adaptive recipe holds out.
        seed: the adaptive recipe's hold-out split, augmented view and
            cross-validation (default: drawn from NumPy's global generator,
            which `keras.utils.set_random_seed` seeds).
        bn: BatchNorm policy of the unfrozen phase (None: the model's own).
        batch_size: for array input.
        steps_per_epoch: needed only when the data's length is unknown.
            Fixed recipe.
        steps_per_execution: an int, or `"auto"`: on an accelerator,
            `tune_steps_per_execution` picks it so that the host's per-step
            work stays under 5% of the step; on a CPU, whose steps are long
            next to that work, it is the compiled model's (1 by default).
            Fixed recipe.
        verbose, **fit_kwargs: passed to `fit` (`fit_kwargs`: fixed recipe).

    Returns:
        A `keras.callbacks.History` with `phases`: a list of `{"name",
        "first_epoch", "epochs"}`. The adaptive recipe adds `decision`: what
        each phase scored on the held-out slice, what was kept and why, the
        settings, and the seconds each phase took.
    """
    if adaptive not in (None, True, False):
        raise ValueError(f"`adaptive` must be None, True or False. Received: adaptive={adaptive!r}")
    fixed = dict(
        epochs=epochs,
        freeze_epochs=freeze_epochs,
        base_lr=base_lr,
        lr_mult=lr_mult,
        schedule=schedule,
    )
    if adaptive is None:
        adaptive = all(value is None for value in fixed.values())
    batch_size = guards.check_batch_size(batch_size)
    if isinstance(train, list):
        raise ValueError(
            "`train` must be a tuple (images, labels), a tf.data.Dataset or a PyDataset. "
            f"Received: a list of {len(train)} items; pass tuple(train)"
        )
    if adaptive:
        given = [name for name, value in fixed.items() if value is not None]
        given += ["steps_per_epoch"] if steps_per_epoch is not None else []
        if given or fit_kwargs:
            raise ValueError(
                "The adaptive recipe sets its own epochs and rates: drop "
                f"{given + list(fit_kwargs)}, or pass adaptive=False for the fixed recipe. "
                f"Received: {', '.join(given + list(fit_kwargs))}"
            )
        blocks_of(model)  # fails early, and clearly, without blocks
        multi_worker.patch_if_needed()
        if bn is not None:
            freezing.unfreeze(model, "all", bn=bn)
        return adaptive_fine_tune(
            model,
            train,
            validation_data,
            compile_args=_compile_args(model),
            batch_size=batch_size,
            holdout=holdout,
            seed=seed,
            callbacks=callbacks,
            verbose=verbose,
        )
    epochs = 5 if epochs is None else epochs
    freeze_epochs = 1 if freeze_epochs is None else freeze_epochs
    base_lr = 2e-3 if base_lr is None else base_lr
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
    # A non-finite loss puts the weights back as they came, then raises.
    stop = guards.StopOnNonFiniteLoss(restore=model.get_weights())
    compile_args = _compile_args(model)
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
        multipliers = freezing.block_multipliers(model, lr_range=(head_lr / lr_mult, head_lr))
    else:
        multipliers = freezing.recipe_multipliers(model, lr_range=(head_lr / lr_mult, head_lr))
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
    return _merged_history(model, histories, phases)


def _auto_steps_per_execution(model, steps_per_execution, x, y, batch_size, compile_args):
    if steps_per_execution == "auto" and precision.accelerator()[0] != "cpu":
        compile_args["steps_per_execution"] = tune_steps_per_execution(
            model, x, y, batch_size=batch_size or 32
        )


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
    >>> keras_transfer.recipes.tune_steps_per_execution(model, x, y, batch_size=4) >= 1
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


def _with_rate(config, rate):
    """An optimizer config whose (innermost) rate is `rate`."""
    inner = config["config"]
    for key in ("optimizer", "inner_optimizer"):
        if key in inner:
            inner[key] = _with_rate(inner[key], rate)
            return config
    inner["learning_rate"] = keras.optimizers.schedules.serialize(rate)
    return config


def _scheduled_rate(schedule, peak, total_steps, **kwargs):
    if schedule == "constant":
        return peak
    return OneCycle(peak, max(int(total_steps), 1), **kwargs)


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


def _compile_args(model):
    if getattr(model, "compiled", False):
        config = dict(_compat.compile_config(model))
        config.pop("optimizer", None)
        return config
    last = [layer for layer in _compat.flatten_layers(model) if hasattr(layer, "activation")]
    activation = getattr(last[-1].activation, "__name__", "") if last else ""
    return {
        "loss": keras.losses.SparseCategoricalCrossentropy(
            from_logits=activation not in ("softmax", "sigmoid")
        ),
        "metrics": ["accuracy"],
    }


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
