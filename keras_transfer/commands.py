"""The `keras-transfer` sub-commands: what `cli.main` runs once it has
parsed the arguments and quietened the backend's start-up logs."""

import ast
import json
import math
import pathlib
import sys
import time
import zipfile

import keras
import numpy as np

from keras_transfer import __version__, _io, demo, report, strategies
from keras_transfer import backbones as registry
from keras_transfer.factory import transfer
from keras_transfer.features import extract_features
from keras_transfer.guards import NonFiniteLossError
from keras_transfer.image_folder import (
    MAX_IMAGE_SIZE,
    ImageFolder,
    image_files,
    read_image,
    split_folders,
)

__all__ = [
    "NonFiniteLossError",
    "USAGE_ERRORS",
    "UsageError",
    "backbones",
    "demo_command",
    "evaluate",
    "extract",
    "fit",
    "predict",
]

# Errors that mean "fix your arguments or data", not "the program is broken".
USAGE_ERRORS = (
    ValueError,
    FileNotFoundError,
    NotADirectoryError,
    FileExistsError,
    PermissionError,
    ImportError,
    ConnectionError,  # a download that failed offline: the message says what to pass
    BlockingIOError,  # a feature store that another process is writing
)
# The fixed strategies' defaults; the adaptive one (auto) chooses its own.
_FIXED_RECIPE_DEFAULTS = {"epochs": 10, "freeze_epochs": 1, "lr": 1e-3}


class UsageError(Exception):
    """Bad arguments or data: exit code 2, one line, no traceback."""


# --- Sub-commands ---------------------------------------------------------------


def fit(args):
    """Trains a transfer model on DATA_DIR and writes the run's report."""
    adaptive = strategies.get(args.strategy).adaptive
    given = [name for name in _FIXED_RECIPE_DEFAULTS if getattr(args, name) is not None]
    if adaptive and given:
        raise UsageError(
            f"--{given[0].replace('_', '-')} sets a fixed recipe: add --strategy fine_tune (or "
            "feature_extraction, gradual). The default strategy, auto, chooses its own epochs "
            f"and rates. Received: --{given[0].replace('_', '-')} {getattr(args, given[0])}"
        )
    for name, value in _FIXED_RECIPE_DEFAULTS.items():
        if getattr(args, name) is None and not adaptive:
            setattr(args, name, value)
    fixed = [] if adaptive else ["epochs"]
    _check_positive(args, *fixed, "batch_size", "image_size")
    if fixed and not (math.isfinite(args.lr) and args.lr > 0):
        raise UsageError(f"--lr must be a finite number above 0. Received: --lr {args.lr}")
    if fixed and args.freeze_epochs < 0:
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
    train, val = _train_val(args, size)
    names = train.class_names
    _print_unless_quiet(
        args,
        f"{len(train.labels)} training and {len(val.labels)} validation images, "
        f"{len(names)} classes: {', '.join(names)}",
    )
    source = dict(
        mixed_precision=args.mixed_precision,
        weights=_weights(args.weights),
        input_shape=size + (3,),
        backbone_kwargs=_backbone_kwargs(args.backbone_arg),
    )
    verbose = 0 if args.quiet else 2 if not sys.stdout.isatty() else 1
    callbacks = [] if args.quiet else [_Throughput(args.batch_size)]
    fit_start = time.perf_counter()
    model, history, phases = _train(args, train, val, source, verbose, callbacks)
    fit_seconds = time.perf_counter() - fit_start
    model = _with_probabilities(model)
    epochs_run = len(next(iter(history.history.values())))
    result = _evaluate(model, val, args.batch_size)
    result.update(
        history={k: [float(v) for v in values] for k, values in history.history.items()},
        phases=phases,
        train_images=len(train.labels),
        val_images=len(val.labels),
        skipped_files=sorted(set(train.skipped + val.skipped)),
        fit_seconds=round(fit_seconds, 2),
        images_per_s=round(epochs_run * len(train.labels) / fit_seconds, 1),
        wall_time_s=round(time.perf_counter() - start, 2),
    )
    decision = getattr(history, "decision", None)
    if decision is not None:  # the adaptive recipe: what each phase reached, what was kept
        result["recipe"] = decision
        _print_unless_quiet(
            args,
            f"recipe: kept the {decision['kept'].replace('_', '-')} model; {decision['reason']}",
        )
    config = _run_config(args, names)
    with report.staging(out, args.overwrite) as stage:
        model.save(stage / "model.keras")
        report.write_json(stage / "config.json", config)
        report.write_json(stage / "metrics.json", result)
        report.plot_curves(result["history"], phases, stage / "curves.png")
        report.plot_confusion(result["confusion_matrix"], names, stage / "confusion.png")
    _summary(args, result, out)


def evaluate(args):
    """Evaluates a run's model (or a `.keras` file) on DATA_DIR."""
    model, config, model_path = _load_model(args.model)
    out = report.output_dir(
        args.out or model_path.parent / "evaluation", args.overwrite, inputs=[args.data_dir]
    )
    data = pathlib.Path(args.data_dir)
    splits = split_folders(data) if data.is_dir() else {}
    if splits:
        data = splits.get("val", splits.get("validation", splits.get("test", data)))
    size = tuple(model.input_shape[1:3])
    names = config.get("class_names")
    folder = _image_folder(data, size, names, args)
    names = names or folder.class_names
    _check_classes(model, names)
    start = time.perf_counter()
    result = _evaluate(model, folder, args.batch_size)
    result.update(
        data_dir=str(data),
        images=len(folder.labels),
        skipped_files=folder.skipped,
        wall_time_s=round(time.perf_counter() - start, 2),
    )
    with report.staging(out, args.overwrite) as stage:
        report.write_json(stage / "metrics.json", result)
        report.plot_confusion(result["confusion_matrix"], names, stage / "confusion.png")
    print(f"accuracy {result['accuracy']:.4f} on {len(folder.labels)} images of {data}")
    _per_class_table(result)
    print(f"report: {out}")


def predict(args):
    """Prints the top classes of each image."""
    _check_positive(args, "top_k")
    model, config, _ = _load_model(args.model)
    names = config.get("class_names") or [str(i) for i in range(_outputs(model))]
    paths = []
    for item in map(pathlib.Path, args.images):
        if item.is_dir():
            paths += image_files(item)
        elif item.is_file():
            paths.append(item)
        else:
            raise FileNotFoundError(
                f"No image or directory at {str(item)!r}. Received: {str(item)!r}"
            )
    size = tuple(model.input_shape[1:3])
    images, kept, skipped = [], [], []
    for path in paths:
        try:
            images.append(read_image(path, size))
            kept.append(path)
        except Exception as error:  # PIL raises many types for bad files
            skipped.append(f"{path.name} ({type(error).__name__})")
    if skipped:
        print(
            f"warning: skipped {len(skipped)} files that are not images: {', '.join(skipped)}",
            file=sys.stderr,
        )
    if not images:
        raise UsageError(f"No image to predict on. Received: {args.images}")
    probabilities = np.asarray(
        model.predict(np.stack(images), batch_size=args.batch_size, verbose=0)
    )
    if (
        probabilities.min() < 0
        or probabilities.max() > 1
        or not np.allclose(probabilities.sum(-1), 1, atol=1e-3)
    ):
        # Logits (a model written by plain Keras): report probabilities.
        probabilities = np.asarray(
            keras.ops.convert_to_numpy(keras.ops.softmax(probabilities.astype("float32"), axis=-1))
        )
    k = min(args.top_k, probabilities.shape[-1])
    rows = []
    for path, p in zip(kept, probabilities):
        top = np.argsort(-p)[:k]
        rows.append(
            {
                "image": str(path),
                "top": [{"class": names[i], "probability": round(float(p[i]), 4)} for i in top],
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    width = max(len(r["image"]) for r in rows)
    print(f"{'image':<{width}}  " + "  ".join(f"{'class':<12} {'prob':>6}" for _ in range(k)))
    for r in rows:
        cells = "  ".join(f"{t['class']:<12} {t['probability']:>6.3f}" for t in r["top"])
        print(f"{r['image']:<{width}}  {cells}")


def extract(args):
    """Extracts features to a store (resumable; reused when the key matches).
    A root of split folders (`train/`, `val/`) gives one store per split."""
    _check_positive(args, "batch_size", "image_size")
    root, out = pathlib.Path(args.data_dir), pathlib.Path(args.out)
    splits = split_folders(root) if root.is_dir() else {}
    if _io.is_inside(out, root) or _io.is_inside(root, out):
        raise UsageError(
            f"--out may not hold or lie inside the data {str(root)!r}. Received: --out={str(out)!r}"
        )
    classes = {
        name: sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
        for name, path in splits.items()
    }
    if len({tuple(c) for c in classes.values()}) > 1:
        raise UsageError(f"The split folders of {str(root)!r} hold different classes: {classes}")
    size = (args.image_size, args.image_size)
    features = transfer(
        args.backbone,
        weights=_weights(args.weights),
        input_shape=size + (3,),
        backbone_kwargs=_backbone_kwargs(args.backbone_arg),
        feature_layer=args.layer,
        pooling=args.pooling,
    )
    for data, cache in [(path, out / name) for name, path in splits.items()] or [(root, out)]:
        result = extract_features(
            features,
            data,
            batch_size=args.batch_size,
            cache=cache,
            progress=not args.quiet,
            overwrite=args.overwrite,
        )
        print(
            f"{len(result)} x {result.x.shape[-1]} features of {args.backbone} "
            f"({len(result.class_names or [])} classes) in {cache}"
        )


def backbones(args):
    """Lists the registered backbones: keras.applications, then KerasHub's
    presets when the keras-hub extra is installed."""
    rows = registry.table() + registry.keras_hub_table()
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    if args.markdown:
        print(registry.markdown_table())
        return
    header = ("name", "family", "size", "min", "preprocessing", "blocks", "parameters")
    wide = [max(len(str(r[k])) for r in rows + [{"name": "", "family": ""}]) for k in header[:2]]
    wide = [max(18, w) for w in wide]
    print("  ".join(f"{h:<{wide[i]}}" if i < 2 else f"{h:>13}" for i, h in enumerate(header)))
    for r in rows:
        cells = [
            "-" if r[k] is None else f"{r[k]:,}" if k == "parameters" else str(r[k])
            for k in ("input_size", "min_size", "preprocessing", "blocks", "parameters")
        ]
        print(
            f"{r['name']:<{wide[0]}}  {r['family']:<{wide[1]}}  "
            + "  ".join(f"{c:>13}" for c in cells)
        )
    if not any("KerasHub" in r["family"] for r in rows):
        print("KerasHub presets: pip install 'keras-transfer[keras-hub]'")


def demo_command(args):
    """The comparison of strategies (digits by default; photos with --data)."""
    demo.run(
        data=args.data,
        weights=args.weights,
        backbone=args.backbone,
        backbone_kwargs=_backbone_kwargs(args.backbone_arg),
        out=args.out,
        epochs=args.epochs,
        image_size=args.image_size,
        shots=args.shots,
        seed=args.seed,
        overwrite=args.overwrite,
        quiet=args.quiet,
    )


# --- Helpers ------------------------------------------------------------------------


def _train(args, train, val, source, verbose, callbacks):
    """Builds and trains with `args.strategy`'s row of the strategy table;
    returns `(model, history, phases)`."""
    strategy = strategies.get(args.strategy)
    num_classes = len(train.class_names)
    # The adaptive recipe's probe also sees two views through the model's
    # augmentation: flips hold for photos.
    augmentation = (
        [keras.layers.RandomFlip("horizontal", seed=args.seed)] if strategy.adaptive else None
    )
    model = transfer(
        args.backbone,
        num_classes if strategy.head else None,
        strategy=strategy.name,
        augmentation=augmentation,
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
    }
    history = strategy.load_recipe()(
        model,
        (train.images, train.labels),
        (val.images, val.labels),
        batch_size=args.batch_size,
        verbose=verbose,
        callbacks=callbacks,
        **{name: given[name] for name in strategy.options},
    )
    return history.model, history, history.phases


def _train_val(args, size):
    train, val = ImageFolder.train_val(
        args.data_dir, size, args.val_dir, args.val_split, args.seed, progress=not args.quiet
    )
    _warn_skipped(train, args.data_dir)
    if val.skipped is not train.skipped:  # a split shares its folder's list
        _warn_skipped(val, args.val_dir or args.data_dir)
    return train, val


def _image_folder(root, size, class_names, args):
    folder = ImageFolder.load(root, size, class_names, progress=not args.quiet)
    _warn_skipped(folder, root)
    return folder


def _warn_skipped(folder, root):
    if folder.skipped:
        print(
            f"warning: skipped {len(folder.skipped)} files in {root} that are not images: "
            f"{', '.join(folder.skipped[:10])}",
            file=sys.stderr,
        )


def _evaluate(model, folder, batch_size):
    probabilities = model.predict(folder.images, batch_size=batch_size, verbose=0)
    return report.classification_report(folder.labels, probabilities.argmax(-1), folder.class_names)


def _with_probabilities(model):
    """The saved model gives class probabilities: softmax on the logits."""
    output = keras.layers.Softmax(dtype="float32", name="probabilities")(model.output)
    return keras.Model(model.input, output, name=model.name)


def _load_model(path):
    path = pathlib.Path(path)
    model_path = path / "model.keras" if path.is_dir() else path
    if not model_path.is_file():
        raise FileNotFoundError(
            f"No model at {str(model_path)!r}: pass a run directory "
            f"written by `keras-transfer fit` or a .keras file. Received: {str(path)!r}"
        )
    if not zipfile.is_zipfile(model_path):
        raise UsageError(
            f"{str(model_path)!r} is not a Keras model file (a .keras archive). "
            f"Received: {str(path)!r}"
        )
    config_path = model_path.parent / "config.json"
    config = {}
    if config_path.is_file():
        try:
            config = json.loads(config_path.read_text())
            if not isinstance(config, dict):
                raise ValueError(f"a {type(config).__name__}, not an object")
        except (ValueError, UnicodeDecodeError) as error:
            raise UsageError(
                f"The run's {str(config_path)!r} is damaged ({error}): restore it, "
                "or pass the .keras file of a folder without one"
            ) from error
    model = keras.saving.load_model(model_path)
    names = config.get("class_names")
    if names is not None and len(names) != _outputs(model):
        raise UsageError(
            f"{str(config_path)!r} names {len(names)} classes but the model has "
            f"{_outputs(model)} outputs: the config belongs to another model"
        )
    return model, config, model_path


def _outputs(model):
    return int(model.outputs[0].shape[-1])


def _check_classes(model, names):
    outputs = _outputs(model)
    if outputs != len(names):
        raise UsageError(f"The model has {outputs} classes but the data has {len(names)}: {names}")


def _weights(value):
    return None if value.lower() == "none" else value


def _backbone_kwargs(pairs):
    kwargs = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise UsageError(f"--backbone-arg takes KEY=VALUE. Received: {pair!r}")
        try:
            kwargs[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            kwargs[key] = value
    return kwargs


def _check_positive(args, *names):
    for name in names:
        value = getattr(args, name)
        if value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1. Received: {value}")
    if "image_size" in names and args.image_size > MAX_IMAGE_SIZE:
        raise UsageError(
            f"--image-size must be at most {MAX_IMAGE_SIZE} pixels. Received: {args.image_size}"
        )


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
    _per_class_table(result)
    print(f"run written to {out}: model.keras metrics.json curves.png confusion.png config.json")


def _per_class_table(result):
    print(f"{'class':<20} {'precision':>9} {'recall':>7} {'support':>8}")
    for name, row in result["per_class"].items():
        print(f"{name:<20} {row['precision']:>9.3f} {row['recall']:>7.3f} {row['support']:>8}")


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
