"""`keras-transfer evaluate`: a run's model (or a `.keras` file) on a
folder of photos, with its report: the metrics, the confusion matrix, the
most confused pairs, the top losses, their Grad-CAM maps, the share the
unknown score turns away, and one self-contained `report.html`."""

import pathlib
import time

import numpy as np

from keras_transfer.commands._shared import (
    UsageError,
    check_positive,
    class_count,
    load_model,
    per_class_table,
    predict_stream,
    warn_skipped,
)
from keras_transfer.deploy import report
from keras_transfer.deploy.inspection import TopLosses, grad_cam, most_confused, write_html_report
from keras_transfer.heads.calibration import expected_calibration_error
from keras_transfer.heads.unknown import unknown_output
from keras_transfer.images.decoding import read_image
from keras_transfer.images.folder import split_folders
from keras_transfer.images.stream import ImageStream

__all__ = ["evaluate"]


def evaluate(args):
    """Evaluates a run's model (or a `.keras` file) on DATA_DIR."""
    check_positive(args, "top_losses")
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
    stream = ImageStream(data, size, args.batch_size, class_names=names, cache=None)
    names = names or stream.class_names
    _check_classes(model, names)
    start = time.perf_counter()
    scored = unknown_output(model)
    # Streamed: only the probabilities and the k worst images are kept.
    probabilities, labels, kept = predict_stream(scored or model, stream)
    warn_skipped(stream.skipped, data)
    scores = None
    if scored is not None:  # {"probabilities" or "logits", "unknown_score"}
        scores = probabilities.pop("unknown_score")
        (probabilities,) = probabilities.values()
    worst = TopLosses(args.top_losses)
    worst.add(kept, probabilities, labels)
    result = report.classification_report(labels, probabilities.argmax(-1), names)
    result["expected_calibration_error"] = expected_calibration_error(probabilities, labels)
    if scores is not None:
        threshold = model.get_layer("unknown_score").threshold
        result["unknown"] = _unknown_report(scores, threshold, probabilities.argmax(-1) == labels)
    rows = worst.rows()
    # Relative to the run and data folders: a report reads the same on
    # another machine, and names no one's home directory.
    result.update(
        model=str(pathlib.Path(model_path.parent.name, model_path.name)),
        data_dir=str(pathlib.Path(*data.resolve().parts[-2:])),
        images=len(labels),
        skipped_files=stream.skipped,
        wall_time_s=round(time.perf_counter() - start, 2),
        most_confused=most_confused(result["confusion_matrix"], names),
        top_losses=[
            {
                "path": _relative(stream.paths[int(row["path"])], data),
                "true": names[row["label"]],
                "predicted_class": names[row["predicted"]],
                "probability": row["probability"],
                "loss": row["loss"],
            }
            for row in rows
        ],
    )
    # The k worst images, decoded again: the stream kept none.
    images = [read_image(stream.paths[int(r["path"])], size, stream.reduced_decoding) for r in rows]
    images = np.stack(images) if images else None
    maps, why = _grad_cam(model, images)
    result["gradcam"] = why or "the predicted class, at the features that enter the pooling"
    with report.staging(out, args.overwrite) as stage:
        report.write_json(stage / "metrics.json", result)
        report.plot_confusion(result["confusion_matrix"], names, stage / "confusion.png")
        figures = {"confusion matrix": stage / "confusion.png"}
        report.plot_reliability(probabilities, labels, stage / "reliability.png")
        figures[
            f"reliability: expected calibration error {result['expected_calibration_error']:.3f}"
        ] = stage / "reliability.png"
        if rows:
            titles = [
                f"{r['true']} -> {r['predicted_class']} ({r['probability']:.2f})"
                for r in result["top_losses"]
            ]
            report.plot_images(images, titles, stage / "top_losses.png")
            figures["top losses: true -> predicted (probability)"] = stage / "top_losses.png"
            if maps is not None:
                report.plot_images(images, titles, stage / "gradcam.png", maps=maps)
                figures["Grad-CAM of the predicted class"] = stage / "gradcam.png"
        curves = model_path.parent / "curves.png"
        figures["training curves"] = curves if curves.is_file() else None
        write_html_report(stage / "report.html", result, figures)
    print(f"accuracy {result['accuracy']:.4f} on {len(labels)} images of {data}")
    per_class_table(result)
    for true, predicted, count in result["most_confused"][:5]:
        print(f"confused: {true} -> {predicted} ({count})")
    print(f"expected calibration error {result['expected_calibration_error']:.3f}")
    if "unknown" in result:
        u = result["unknown"]
        accepted = "" if u["accuracy_accepted"] is None else f"{u['accuracy_accepted']:.4f}"
        print(
            f"unknown: {u['images_unknown']} of {len(labels)} images below the threshold "
            f"{u['threshold']:.2f} ({u['share_unknown']:.1%}); accuracy of the rest {accepted}"
        )
    print(
        f"report: {out} (report.html, top_losses.png, gradcam.png, reliability.png, metrics.json)"
    )


def _unknown_report(scores, threshold, correct):
    """What `predict` would answer unknown on the folder's images (all of
    them of the model's classes), and the accuracy of those it accepts."""
    accepted = scores >= threshold
    return {
        "threshold": float(threshold),
        "images_unknown": int((~accepted).sum()),
        "share_unknown": round(float(1 - accepted.mean()), 4),
        "accuracy_accepted": round(float(correct[accepted].mean()), 4) if accepted.any() else None,
    }


def _relative(path, folder):
    path, folder = pathlib.Path(path).resolve(), folder.resolve()
    return str(path.relative_to(folder) if path.is_relative_to(folder) else path.name)


def _grad_cam(model, images):
    """`(maps, None)`, or `(None, why not)` for a model Grad-CAM cannot read."""
    if images is None:
        return None, "no mistakes to explain"
    try:
        return grad_cam(model, images.astype(np.float32)), None
    except ValueError as error:
        return None, f"not drawn: {error}"


def _check_classes(model, names):
    outputs = class_count(model)
    if outputs != len(names):
        raise UsageError(f"The model has {outputs} classes but the data has {len(names)}: {names}")
