"""`keras-transfer fit`: trains on a folder of photos with a strategy of
`ktr.strategies` and writes the run's report."""

import math
import pathlib
import sys
import time
import warnings

import keras

from keras_transfer import __version__, strategies
from keras_transfer.commands._shared import (
    UsageError,
    check_positive,
    parse_backbone_args,
    parse_weights,
    per_class_table,
    predict_stream,
    warn_skipped,
)
from keras_transfer.deploy import report
from keras_transfer.factory import transfer
from keras_transfer.heads.calibration import calibration_report
from keras_transfer.heads.unknown import fit_unknown
from keras_transfer.images.decoding import decoder
from keras_transfer.images.folder import train_val_files
from keras_transfer.images.stream import ImageStream
from keras_transfer.layers import TemperatureScaling

__all__ = ["fit"]


# The recipe settings a fixed strategy takes from the command line; the
# adaptive one (auto) chooses its own. Their defaults are the strategy's row's.
_RECIPE_FLAGS = ("--epochs", "--freeze-epochs", "--lr")


def fit(args):
    """Trains a transfer model on DATA_DIR and writes the run's report."""
    row = strategies.get(args.strategy)
    given = [flag for flag in _RECIPE_FLAGS if getattr(args, _attribute(flag)) is not None]
    if row.adaptive and given:
        raise UsageError(
            f"{given[0]} sets a fixed recipe: add --strategy fine_tune (or "
            "feature_extraction, gradual). The default strategy, auto, chooses its own epochs "
            f"and rates. Received: {given[0]} {getattr(args, _attribute(given[0]))}"
        )
    if args.no_flip and not row.adaptive:
        raise UsageError(
            "--no-flip sets the auto strategy's augmentation; the fixed strategies add none. "
            f"Received: --no-flip with --strategy {args.strategy}"
        )
    if args.no_balance and "balance" not in row.options:
        raise UsageError(
            "--no-balance sets the class weighting of the auto, fine_tune and gradual "
            "strategies; feature_extraction weighs every image alike. "
            f"Received: --no-balance with --strategy {args.strategy}"
        )
    for option, value in row.defaults:
        flag = strategies.FLAGS[option]
        if flag in _RECIPE_FLAGS and getattr(args, _attribute(flag)) is None:
            setattr(args, _attribute(flag), value)
    check_positive(args, *([] if args.epochs is None else ["epochs"]), "batch_size", "image_size")
    if args.lr is not None and not (math.isfinite(args.lr) and args.lr > 0):
        raise UsageError(f"--lr must be a finite number above 0. Received: --lr {args.lr}")
    if args.freeze_epochs is not None and args.freeze_epochs < 0:
        raise UsageError(f"--freeze-epochs must be at least 0. Received: {args.freeze_epochs}")
    report.check_plotting()  # before training, not after
    out = report.output_dir(
        args.out or f"runs/fit-{time.strftime('%Y%m%d-%H%M%S')}",
        args.overwrite,
        inputs=[args.data_dir, args.val_dir],
    )
    start = time.perf_counter()
    keras.utils.set_random_seed(args.seed)
    size = (args.image_size, args.image_size)
    train, val = _train_val(args, row, size)
    names = train.class_names
    _print_unless_quiet(
        args,
        f"{len(train.paths)} training and {len(val.paths)} validation files, "
        f"{len(names)} classes: {', '.join(names)}",
    )
    source = dict(
        mixed_precision=args.mixed_precision,
        weights=parse_weights(args.weights),
        input_shape=size + (3,),
        backbone_kwargs=parse_backbone_args(args.backbone_arg),
    )
    verbose = 0 if args.quiet else 2 if not sys.stdout.isatty() else 1
    callbacks = [] if args.quiet else [_Throughput(args.batch_size)]
    fit_start = time.perf_counter()
    model, history, phases = _train(args, row, train, val, source, verbose, callbacks)
    fit_seconds = time.perf_counter() - fit_start
    epochs_run = len(next(iter(history.history.values())))
    # One pass over the validation split: its logits give the report and
    # fit the temperature (which leaves every argmax as it is).
    logits, labels, _ = predict_stream(model, val)
    result = report.classification_report(labels, logits.argmax(-1), names)
    result["calibration"] = calibration_report(logits, labels)
    with warnings.catch_warnings():  # skipped files are summed up below
        warnings.simplefilter("ignore", UserWarning)
        model = fit_unknown(model, train, val)
    result["unknown"] = model.unknown
    model = _with_probabilities(model, result["calibration"]["temperature"])
    train_images = len(train.paths) - len(train.skipped)
    skipped = sorted(set(train.skipped + val.skipped))  # known once each file was read
    warn_skipped(skipped, args.data_dir)
    result.update(
        history={
            k: [None if v is None else float(v) for v in values]
            for k, values in history.history.items()
        },
        phases=phases,
        train_images=train_images,
        val_images=len(val.paths) - len(val.skipped),
        skipped_files=skipped,
        fit_seconds=round(fit_seconds, 2),
        images_per_s=round(epochs_run * train_images / fit_seconds, 1),
        wall_time_s=round(time.perf_counter() - start, 2),
    )
    decision = getattr(history, "decision", None)
    # Whether the classes were weighted to count alike, and why.
    result["balance"] = (decision or {}).get("balance") or getattr(history, "balance", None)
    if decision is not None:  # the adaptive recipe: what each phase reached, what was kept
        result["recipe"] = decision
        _print_unless_quiet(
            args,
            f"recipe: kept the {decision['kept'].replace('_', '-')} model; {decision['reason']}",
        )
    if result["balance"] is not None and result["balance"]["used"]:
        _print_unless_quiet(args, f"classes weighted to count alike: {result['balance']['why']}")
    config = _run_config(args, names)
    config["calibration"] = {
        "temperature": result["calibration"]["temperature"],
        "fitted_on": f"the validation split ({result['calibration']['images']} images)",
    }
    config["unknown"] = {
        "threshold": result["unknown"]["threshold"],
        "fitted_on": f"the class means of the {result['unknown']['train_images']} training "
        f"images' features; the threshold on the validation split "
        f"({result['unknown']['held_out_images']} images)",
    }
    with report.staging(out, args.overwrite) as stage:
        model.save(stage / "model.keras")
        report.write_json(stage / "config.json", config)
        report.write_json(stage / "metrics.json", result)
        report.plot_curves(result["history"], phases, stage / "curves.png")
        report.plot_confusion(result["confusion_matrix"], names, stage / "confusion.png")
    _summary(args, result, out)


def _train(args, strategy, train, val, source, verbose, callbacks):
    """Builds and trains with `strategy`, the strategy table's row;
    returns `(model, history, phases)`."""
    num_classes = len(train.class_names)
    model = transfer(
        args.backbone,
        num_classes if strategy.head else None,
        strategy=strategy.name,
        **source,
    )
    given = {
        "seed": args.seed,
        "num_classes": num_classes,
        "epochs": args.epochs,
        "freeze_epochs": args.freeze_epochs,
        "base_lr": args.lr,
        "learning_rate": args.lr,
        "progress": not args.quiet,
        "flip": not args.no_flip,
        "balance": False if args.no_balance else "auto",
    }
    history = strategy.load_recipe()(
        model,
        train,
        val,
        batch_size=args.batch_size,
        verbose=verbose,
        callbacks=callbacks,
        **{name: given[name] for name in strategy.options},
    )
    return history.model, history, history.phases


def _train_val(args, strategy, size):
    """`(train, val)` ImageStreams, split by file, decoded as they are
    needed; kept decoded in memory when they fit (`cache="auto"`) only for
    a recipe that reads the images each epoch."""
    names, train, val = train_val_files(args.data_dir, args.val_dir, args.val_split, args.seed)
    cache = "auto" if strategy.reads == "each epoch" else None
    options = dict(class_names=names, cache=cache)
    return (
        ImageStream(train, size, args.batch_size, shuffle=True, seed=args.seed, **options),
        ImageStream(val, size, args.batch_size, **options),
    )


def _attribute(flag):
    return flag[2:].replace("-", "_")


def _with_probabilities(model, temperature):
    """The saved model gives calibrated class probabilities: softmax on the
    logits divided by the temperature."""
    logits = TemperatureScaling(temperature, name="temperature_scaling")(model.output)
    output = keras.layers.Softmax(dtype="float32", name="probabilities")(logits)
    return keras.Model(model.input, output, name=model.name)


def _run_config(args, class_names):
    settings = {k: v for k, v in vars(args).items() if k not in ("run", "debug", "quiet")}
    settings["data_dir"] = str(pathlib.Path(args.data_dir).resolve())
    argv = ["keras-transfer", "fit", settings["data_dir"]]
    for key, value in settings.items():
        if key in ("command", "data_dir", "out", "overwrite") or value in (None, False, []):
            continue
        flag = "--" + key.replace("_", "-")
        values = value if isinstance(value, list) else [value]
        argv += [flag] if value is True else [x for v in values for x in (flag, str(v))]
    return {
        "settings": settings,
        "class_names": class_names,
        "command": argv,
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "keras_transfer": __version__,
        # The pixels it trained on: a deployment that decodes otherwise sees others.
        "decoding": decoder(),
    }


def _print_unless_quiet(args, text):
    if not args.quiet:
        print(text)


def _summary(args, result, out):
    if args.quiet:
        print(f"val accuracy {result['accuracy']:.4f}  {out}")
        return
    print(
        f"\nval accuracy {result['accuracy']:.4f}   {result['val_images']} images   "
        f"fit {result['fit_seconds']:.1f} s   {result['images_per_s']:.1f} images/s"
    )
    per_class_table(result)
    c = result["calibration"]
    print(
        f"calibration: temperature {c['temperature']:.2f} (on the {c['images']} validation "
        f"images); expected calibration error {c['ece_before']:.3f} -> {c['ece_after']:.3f}"
        + (
            f" ({c['skipped']}: not fitted)"
            if "skipped" in c
            else f" ({c['ece_after_cross_fitted']:.3f} cross-fitted)"
        )
    )
    u = result["unknown"]
    print(
        f"unknown: {u['skipped']}: no score"
        if "skipped" in u
        else f"unknown: below {u['threshold']:.2f}, the score of {1 - u['accept']:.0%} of the "
        f"validation images (predict answers unknown there)"
    )
    print(f"run written to {out}: model.keras metrics.json curves.png confusion.png config.json")


class _Throughput(keras.callbacks.Callback):
    """Adds images/s to the logs of each batch (the progress bar shows it) and
    each epoch (the history keeps it). It runs before Keras's own progress
    bar and history, which are appended after the user's callbacks."""

    def __init__(self, batch_size):
        super().__init__()
        self.batch_size = batch_size

    def on_epoch_begin(self, epoch, logs=None):
        self.start, self.steps = time.perf_counter(), 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        if logs is not None:
            logs["images_per_s"] = self._rate()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and self.steps:
            logs["images_per_s"] = self._rate()

    def _rate(self):
        return self.steps * self.batch_size / max(time.perf_counter() - self.start, 1e-9)
