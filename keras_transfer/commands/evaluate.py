"""`keras-transfer evaluate`: a run's model (or a `.keras` file) on a
folder of photos, with its report."""

import pathlib
import time

from keras_transfer import report
from keras_transfer.commands._shared import (
    UsageError,
    class_count,
    evaluate_on,
    load_model,
    per_class_table,
    warn_skipped,
)
from keras_transfer.image_folder import (
    ImageFolder,
    split_folders,
)

__all__ = ["evaluate"]


def evaluate(args):
    """Evaluates a run's model (or a `.keras` file) on DATA_DIR."""
    model, config, model_path = load_model(args.model)
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
    result = evaluate_on(model, folder, args.batch_size)
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
    per_class_table(result)
    print(f"report: {out}")


def _image_folder(root, size, class_names, args):
    folder = ImageFolder.load(root, size, class_names, progress=not args.quiet)
    warn_skipped(folder, root)
    return folder


def _check_classes(model, names):
    outputs = class_count(model)
    if outputs != len(names):
        raise UsageError(f"The model has {outputs} classes but the data has {len(names)}: {names}")
