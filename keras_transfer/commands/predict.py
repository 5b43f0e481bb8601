"""`keras-transfer predict`: the top classes of images."""

import json
import pathlib
import sys

import keras
import numpy as np

from keras_transfer.commands._shared import (
    UsageError,
    check_positive,
    class_count,
    load_model,
)
from keras_transfer.image_folder import (
    image_files,
    read_image,
)

__all__ = ["predict"]


def predict(args):
    """Prints the top classes of each image."""
    check_positive(args, "top_k")
    model, config, _ = load_model(args.model)
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
