"""`keras-transfer predict`: the top classes of images."""

import json
import pathlib
import warnings

import keras
import numpy as np

from keras_transfer.commands._shared import (
    UsageError,
    check_positive,
    class_count,
    load_model,
    warn_skipped,
)
from keras_transfer.heads.unknown import unknown_output
from keras_transfer.images.folder import image_files
from keras_transfer.images.stream import ImageStream

__all__ = ["predict"]


def predict(args):
    """Prints the top classes of each image, and "unknown" where the model's
    unknown score is below its threshold."""
    check_positive(args, "top_k")
    model, config, _ = load_model(args.model)
    scored = None if args.no_unknown else unknown_output(model)
    threshold = None if scored is None else model.get_layer("unknown_score").threshold
    names = config.get("class_names") or [str(i) for i in range(class_count(model))]
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
    if not paths:
        raise UsageError(f"No image to predict on. Received: {args.images}")
    size = tuple(model.input_shape[1:3])
    # Streamed: the images are decoded a few batches ahead, and each row is
    # printed as its batch comes, so memory stays flat however many there are.
    stream = ImageStream((paths, np.zeros(len(paths), "int64")), size, args.batch_size, cache=None)
    k, width, softmax = None, max(len(str(path)) for path in paths), None
    try:
        with warnings.catch_warnings():  # skipped files are summed up below
            warnings.simplefilter("ignore", UserWarning)
            for images, _, rows in stream.iter_batches():
                if scored is None:
                    probabilities, scores = model.predict_on_batch(images), None
                else:
                    out = scored.predict_on_batch(images)
                    scores = np.asarray(keras.ops.convert_to_numpy(out.pop("unknown_score")))
                    probabilities = next(iter(out.values()))
                probabilities = np.asarray(keras.ops.convert_to_numpy(probabilities))
                if softmax is None:
                    # Logits (a model written by plain Keras): report probabilities.
                    softmax = bool(
                        probabilities.min() < 0
                        or probabilities.max() > 1
                        or not np.allclose(probabilities.sum(-1), 1, atol=1e-3)
                    )
                    k = min(args.top_k, probabilities.shape[-1])
                    if not args.json:
                        print(
                            f"{'image':<{width}}  "
                            + "  ".join(f"{'class':<12} {'prob':>6}" for _ in range(k))
                            + ("" if scores is None else f"  {'score':>7}  answer")
                        )
                if softmax:
                    probabilities = np.asarray(
                        keras.ops.convert_to_numpy(
                            keras.ops.softmax(probabilities.astype("float32"), axis=-1)
                        )
                    )
                for index, (row, p) in enumerate(zip(rows, probabilities)):
                    top = [
                        {"class": names[i], "probability": round(float(p[i]), 4)}
                        for i in np.argsort(-p)[:k]
                    ]
                    line = {"image": str(paths[row]), "top": top}
                    if scores is not None:
                        line["unknown"] = bool(scores[index] < threshold)
                        line["unknown_score"] = round(float(scores[index]), 4)
                    if args.json:  # JSON lines: one object a line, as they come
                        print(json.dumps(line), flush=True)
                    else:
                        cells = "  ".join(f"{t['class']:<12} {t['probability']:>6.3f}" for t in top)
                        if scores is not None:
                            answer = "unknown" if line["unknown"] else top[0]["class"]
                            cells += f"  {line['unknown_score']:>7.2f}  {answer}"
                        print(f"{str(paths[row]):<{width}}  {cells}", flush=True)
    finally:
        warn_skipped(stream.skipped, "the images given")
    if softmax is None:  # not one batch: no file decoded
        raise UsageError(f"No file given decodes as an image. Received: {args.images}")
