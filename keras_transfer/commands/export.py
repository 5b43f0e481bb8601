"""`keras-transfer export`: a run's model to LiteRT, ONNX or a SavedModel,
with `labels.txt`, `export.json` and a parity check on the run's own
validation photos."""

import pathlib

import numpy as np

from keras_transfer.commands._shared import UsageError, load_model
from keras_transfer.deploy.exporter import CHECK_IMAGES, export
from keras_transfer.images.decoding import read_images
from keras_transfer.images.folder import split_folders, train_val_files

__all__ = ["export_command"]


def export_command(args):
    """Exports RUN_DIR's model (or a `.keras` file) and checks the export."""
    if args.max_drop < 0:
        raise UsageError(f"--max-drop must be at least 0. Received: {args.max_drop}")
    model, config, model_path = load_model(args.model)
    names = config.get("class_names")
    settings = config.get("settings") or {}
    size = tuple(int(s) for s in model.input_shape[1:3])
    suffix = "" if args.quantize == "none" else f"_{args.quantize}"
    out = pathlib.Path(args.out or model_path.parent / "export" / f"{args.format}{suffix}")
    calibration = args.calibration
    if args.quantize == "int8" and calibration is None:
        calibration = _training_folder(settings)
        if calibration is None:
            raise UsageError(
                "--quantize int8 needs calibration images to set the activations' ranges, and "
                f"the run records no training folder that is still there: pass --calibration "
                f"DIR, a folder of photos like those the model will see (no labels needed). "
                f"Received: {args.model!r}"
            )
    check = args.check or _validation(settings, names, size)
    record = export(
        model,
        out,
        args.format,
        quantize=args.quantize,
        class_names=names,
        calibration=calibration,
        check=check,
        max_drop=args.max_drop / 100,
        overwrite=args.overwrite,
        source=model_path.resolve(),
    )
    parity = record["parity"]
    if record["calibration"]:
        print(
            f"calibrated on {record['calibration']['images']} images of "
            f"{record['calibration']['from']}"
        )
    print(
        f"{record['format']} ({record['quantization']}): {record['size_bytes']:,} bytes, "
        f"checked in {record['runtime']} on {parity['images']} images of {parity['images_from']}"
    )
    print(
        f"  top-1 agreement {parity['agreement']:.4f}, largest probability difference "
        f"{parity['max_probability_difference']:.3g}"
    )
    if "unknown_agreement" in parity:
        print(
            f"  unknown answer agreement {parity['unknown_agreement']:.4f} at the threshold "
            f"{record['unknown']['threshold']:.3f}, largest score difference "
            f"{parity['max_score_difference']:.3g}"
        )
    if parity["keras_accuracy"] is not None:
        print(
            f"  accuracy: Keras {parity['keras_accuracy']:.4f}, export "
            f"{parity['export_accuracy']:.4f}"
        )
    print(
        f"  latency of one image: {parity['latency_ms']:.2f} ms (Keras "
        f"{parity['keras_latency_ms']:.2f} ms)"
    )
    print(f"written: {out} ({record['file']}, labels.txt, export.json)")


def _training_folder(settings):
    """The run's training photos, when its config records them and they are
    still there: int8's calibration needs no labels."""
    data = settings.get("data_dir")
    if not data or not pathlib.Path(data).is_dir():
        return None
    return split_folders(data).get("train", pathlib.Path(data))


def _validation(settings, names, size):
    """The run's validation photos, found again from its config as `fit`
    found them (`train_val_files`: `--val-dir`, a `val/` split folder, or
    the same `--val-split` of DATA_DIR, same seed, same draw). None when
    they are gone: the check falls back."""
    data, val_dir = settings.get("data_dir"), settings.get("val_dir")
    if val_dir and pathlib.Path(val_dir).is_dir():
        return val_dir
    if not data or not pathlib.Path(data).is_dir() or names is None:
        return None
    splits = split_folders(data)
    if splits:
        return splits.get("val", splits.get("validation"))
    _, _, (paths, labels) = train_val_files(
        data,
        val_split=settings.get("val_split") or 0.2,
        seed=settings.get("seed") or 0,
        class_names=names,
    )
    chosen = np.linspace(0, len(paths) - 1, min(len(paths), CHECK_IMAGES)).astype(int)
    images, kept = read_images([paths[i] for i in chosen], size, labels[chosen])
    return None if images is None else (images, kept)
