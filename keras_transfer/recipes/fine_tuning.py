"""The good default in one call: `fine_tune`, as in fastai. It runs the
adaptive recipe (`adaptive.py`) or the fixed one (`fixed.py`)."""

import keras

from keras_transfer.backbones.backbone_model import blocks_of
from keras_transfer.images.stream import ImageStream
from keras_transfer.rates import freezing
from keras_transfer.recipes.adaptive import HOLDOUT, adaptive_fine_tune
from keras_transfer.recipes.augmentation import check_augmentation
from keras_transfer.recipes.fixed import SCHEDULES, fixed_fine_tune
from keras_transfer.utils import _compat, guards, multi_worker
from keras_transfer.utils.labels import check_labels

__all__ = ["SCHEDULES", "fine_tune"]


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
    augmentation="auto",
    flip=True,
    balance="auto",
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
       aside. It is the recipe's only judge. A class with one image is
       trained on, not held out (a warning names it).
    2. Augmentation: the model's own `augmentation` part when `transfer()`
       was given one; otherwise, for up to 1,000 images and unless
       `augmentation=None`, a random resized crop and a horizontal flip
       (`flip=False` where mirroring changes the class), drawn in the
       input pipeline (`ktr.augmentation`): the saved model has no
       augmentation part. Beyond 1,000 images none is drawn: thousands
       need less of it, and crops change what a satellite tile's scale
       tells (the recipe's record says which was used).
    3. Probe: the backbone's features are extracted once (and for up to
       two augmented views of each image: two up to 500 images, one up to
       1,000, none beyond, where views cost passes and lift little), and a
       logistic regression (C by cross-validation, an image's views in one
       fold) becomes the head (LP-FT, Kumar et al. 2022).
    4. Fine-tuning from that head: everything trains for about 500 steps
       (3 to 6 epochs), Adam under one cycle at the fixed recipe's rates
       (the head at 1e-3, the stem 100x lower, 30% of the steps warming
       up). After each epoch the slice is scored and the best epoch's
       weights are kept. Nothing stops it before its fair run: the warm-up
       ended, at least 100 steps and three quarters of the schedule. After
       that it stops when its best is still under the probe's score there
       and its last epoch did not improve (the probe will be kept: the
       time is saved), or after 3 epochs without a better score.
    5. The fine-tuned model is kept if it beats the probe on the slice by
       more than chance: a one-sided sign test on the images the two
       disagree on, p <= 0.2; with 200 training images or more in every
       class, if it is ahead there at all. It is then trained again on all
       of `train`, from the probe refitted on every image, for the number
       of epochs the slice chose, as one cycle (`decision["retrained_on_all"]`).
       Otherwise the probe, refitted on all of `train`, is the model (the
       backbone as it was, frozen).
    6. A temperature is fitted on the slice's logits of the model kept
       (before its refit or retraining) and recorded (`decision["calibration"]`,
       with the calibration error before and after):
       `ktr.calibrate(model, temperature=...)` applies it.

    `validation_data` is never read to decide anything: it is passed to
    `fit` for its curves only, so it stays an untouched measurement. With
    no class of two images nothing can be held out, and the probe is kept
    (a warning says so, and so does the decision record). Afterwards `model` holds the kept
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
            each block `ktr.rate_multipliers.LAYER_DECAY` (0.75) times the rate of
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
        augmentation: the adaptive recipe's augmentation: `"auto"` (the
            model's own, or else `ktr.augmentation.photo_augmentation` for
            up to `ktr.adaptive.AUGMENT_IMAGES` images),
            `None` (none), or Keras layers, drawn in the input pipeline.
        flip: whether the default augmentation flips horizontally.
        balance: `"auto"` makes classes count alike once the largest has
            3 times the images of the smallest (`ktr.labels.balancing`):
            the loss of both recipes weighted by class (where the labels
            are known: arrays or an `ImageStream`), the adaptive recipe's
            probe's logits adjusted by the classes' shares and its
            held-out comparison weighted by class. `True` always, `False`
            never. The adaptive record's `balance` (the fixed recipe's
            `history.balance`) says which was used, and why.
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
    check_augmentation(augmentation, flip)
    compile_args = _compile_args(model)
    _check_loss(compile_args.get("loss"), int(model.outputs[0].shape[-1]))
    _check_validation_labels(validation_data, max(int(model.outputs[0].shape[-1]), 2))
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
            compile_args=compile_args,
            batch_size=batch_size,
            holdout=holdout,
            seed=seed,
            augmentation=augmentation,
            flip=flip,
            balance=balance,
            callbacks=callbacks,
            verbose=verbose,
        )
    if augmentation not in ("auto", None) or not flip:
        raise ValueError(
            "`augmentation` and `flip` set the adaptive recipe's augmentation; the fixed "
            "recipe trains with the model's own (transfer(..., augmentation=[...])). Received: "
            f"augmentation={augmentation!r}, flip={flip!r} with adaptive=False"
        )
    return fixed_fine_tune(
        model,
        train,
        validation_data,
        epochs=epochs,
        freeze_epochs=freeze_epochs,
        base_lr=base_lr,
        lr_mult=lr_mult,
        schedule=schedule,
        callbacks=callbacks,
        bn=bn,
        batch_size=batch_size,
        steps_per_epoch=steps_per_epoch,
        steps_per_execution=steps_per_execution,
        verbose=verbose,
        compile_args=compile_args,
        balance=balance,
        **fit_kwargs,
    )


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


def _check_loss(loss, outputs):
    """Both recipes train on class indices: a compiled Keras loss that takes
    one-hot rows or values (`"mse"`, `"categorical_crossentropy"`) would
    fail inside the compiled step, so it is refused before training. A
    loss of the user's own is trusted."""
    function = loss
    if isinstance(loss, str):
        try:
            function = keras.losses.get(loss)
        except ValueError:
            return
    function = getattr(function, "fn", function)  # a Keras Loss wraps its function
    takes_indices = [keras.losses.sparse_categorical_crossentropy]
    if outputs == 1:
        takes_indices += [keras.losses.binary_crossentropy, keras.losses.binary_focal_crossentropy]
    if function in takes_indices or not getattr(function, "__module__", "").startswith("keras."):
        return
    name = loss if isinstance(loss, str) else type(loss).__name__
    raise ValueError(
        "`model` is compiled with a loss that does not take class indices, and fine_tune "
        "trains on class indices (labels 0 to num_classes - 1). Compile it with "
        "keras.losses.SparseCategoricalCrossentropy (from_logits=True for transfer()'s "
        f"logits), or leave it uncompiled. Received: loss={name!r}"
    )


def _check_validation_labels(validation_data, num_classes):
    """A validation label outside the model's classes fails inside `fit`'s
    compiled step, after the first epoch's training: it is refused first."""
    if isinstance(validation_data, ImageStream):
        labels = validation_data.labels[validation_data.rows]
    elif isinstance(validation_data, tuple) and len(validation_data) >= 2:
        labels = validation_data[1]
    else:
        return
    check_labels(labels, num_classes, argument="validation_data")
