"""What the sub-commands share: the usage errors (exit code 2), reading a
run's model, checking arguments, and the per-class table."""

import ast
import json
import pathlib
import sys
import warnings
import zipfile

import keras
import numpy as np

from keras_transfer import register
from keras_transfer.images.folder import MAX_IMAGE_SIZE
from keras_transfer.utils.guards import NonFiniteLossError

__all__ = [
    "NonFiniteLossError",
    "USAGE_ERRORS",
    "UsageError",
    "check_positive",
    "class_count",
    "load_model",
    "parse_backbone_args",
    "parse_weights",
    "per_class_table",
    "predict_stream",
    "warn_skipped",
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


class UsageError(Exception):
    """Bad arguments or data: exit code 2, one line, no traceback."""


def warn_skipped(skipped, root):
    """Warns, on stderr, of the files of `root` that are not images."""
    if skipped:
        print(
            f"warning: skipped {len(skipped)} files in {root} that are not images: "
            f"{', '.join(skipped[:10])}",
            file=sys.stderr,
        )


def predict_stream(model, stream):
    """`(outputs, labels, rows)` of every image of an `ImageStream` that
    decodes, batch by batch: only the outputs are kept. `outputs` is an
    array, or a dict of arrays for a model with named outputs."""
    outputs, labels, rows = [], [], []
    with warnings.catch_warnings():  # the callers sum skipped files up
        warnings.simplefilter("ignore", UserWarning)
        for images, batch_labels, batch_rows in stream.iter_batches():
            outputs.append(
                keras.tree.map_structure(
                    lambda x: np.asarray(keras.ops.convert_to_numpy(x)),
                    model.predict_on_batch(images),
                )
            )
            labels.append(batch_labels)
            rows.append(batch_rows)
    if not outputs:
        raise UsageError(f"No file decodes as an image: {stream.skipped[:5]}")
    outputs = keras.tree.map_structure(lambda *parts: np.concatenate(parts), *outputs)
    return outputs, np.concatenate(labels), np.concatenate(rows)


def load_model(path):
    """`(model, run config, model path)` from a run directory or a `.keras` file."""
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
    register()  # the library's classes, which the file names
    model = keras.saving.load_model(model_path)
    names = config.get("class_names")
    if names is not None and len(names) != class_count(model):
        raise UsageError(
            f"{str(config_path)!r} names {len(names)} classes but the model has "
            f"{class_count(model)} outputs: the config belongs to another model"
        )
    return model, config, model_path


def class_count(model):
    """The width of the model's (first) output: its number of classes."""
    return int(model.outputs[0].shape[-1])


def parse_weights(value):
    """`--weights`: "none" is `None`, anything else as given."""
    return None if value.lower() == "none" else value


def parse_backbone_args(pairs):
    """`--backbone-arg KEY=VALUE`s as constructor keyword arguments."""
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


def check_positive(args, *names):
    """Refuses arguments below 1, and an image size above `MAX_IMAGE_SIZE`."""
    for name in names:
        value = getattr(args, name)
        if value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1. Received: {value}")
    if "image_size" in names and args.image_size > MAX_IMAGE_SIZE:
        raise UsageError(
            f"--image-size must be at most {MAX_IMAGE_SIZE} pixels. Received: {args.image_size}"
        )


def per_class_table(result):
    """Prints precision, recall and support per class, and the balanced
    accuracy."""
    print(f"{'class':<20} {'precision':>9} {'recall':>7} {'support':>8}")
    for name, row in result["per_class"].items():
        print(f"{name:<20} {row['precision']:>9.3f} {row['recall']:>7.3f} {row['support']:>8}")
    print(f"balanced accuracy {result['balanced_accuracy']:.4f} (the mean of the recalls)")
