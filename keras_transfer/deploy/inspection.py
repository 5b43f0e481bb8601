"""Where a model goes wrong, and why: the most confidently wrong images
(fastai's `plot_top_losses`), the most confused class pairs
(`most_confused`), Grad-CAM heat maps (Selvaraju et al., 2017; keras.io's
example) and one self-contained `report.html`.

Grad-CAM reads the model that `transfer()` builds: the spatial features
that enter the backbone's pooling (the last convolutional map, or a
transformer's last patch tokens), and the class score the head and the
pooling make of them. Its gradient is the one backend-specific step.
"""

import base64
import heapq
import html
import itertools

import keras
import numpy as np

from keras_transfer.utils._io import atomic_write

__all__ = ["TopLosses", "grad_cam", "most_confused", "write_html_report"]


class TopLosses:
    """Keeps the `k` most confidently wrong images seen, by their loss
    (`-log p(true class)`), without holding the others: add batches as they
    are predicted.

    Example:

    >>> worst = keras_transfer.inspection.TopLosses(1)
    >>> worst.add(["a.jpg", "b.jpg"], np.array([[0.9, 0.1], [0.2, 0.8]]), [0, 0])
    >>> [(row["path"], row["predicted"]) for row in worst.rows()]
    [('b.jpg', 1)]

    Args:
        k: how many to keep.
    """

    def __init__(self, k=16):
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"`k` must be an integer >= 1. Received: k={k!r}")
        self.k = k
        self._heap = []  # (loss, order, row): the k largest losses
        self._order = itertools.count()  # ties: the first seen stays

    def add(self, keys, probabilities, labels):
        """`keys` (paths or indices), `(N, classes)` probabilities, true labels."""
        probabilities = np.asarray(probabilities, "float64")
        labels = np.asarray(labels).reshape(-1)
        true = probabilities[np.arange(len(labels)), labels]
        losses = -np.log(np.clip(true, 1e-12, 1.0))
        for key, loss, p, label in zip(keys, losses, probabilities, labels):
            predicted = int(p.argmax())
            if predicted == int(label):
                continue  # a right answer is not a mistake, however unsure
            row = {
                "path": str(key),
                "label": int(label),
                "predicted": predicted,
                "probability": float(p[predicted]),
                "loss": float(loss),
            }
            item = (float(loss), -next(self._order), row)
            if len(self._heap) < self.k:
                heapq.heappush(self._heap, item)
            elif loss > self._heap[0][0]:
                heapq.heapreplace(self._heap, item)

    def rows(self):
        """The kept images, worst first."""
        return [row for _, _, row in sorted(self._heap, key=lambda item: -item[0])]


def most_confused(confusion, class_names, min_count=1):
    """`[(true, predicted, count), ...]`, the off-diagonal cells of a
    confusion matrix (rows: true class) with at least `min_count` images,
    the most frequent first (fastai's `most_confused`)."""
    confusion = np.asarray(confusion)
    pairs = [
        (class_names[i], class_names[j], int(count))
        for (i, j), count in np.ndenumerate(confusion)
        if i != j and count >= min_count
    ]
    return sorted(pairs, key=lambda pair: -pair[2])


def grad_cam(model, images, classes=None):
    """Grad-CAM heat maps of `images` for `classes` (default: the predicted
    ones), at the features that enter the backbone's pooling (a
    transformer's: its patch tokens as they enter its last block).

    Example:

    >>> model = keras_transfer.transfer("mobilenet", num_classes=2, weights=None,
    ...                                 input_shape=(32, 32, 3))
    >>> maps = keras_transfer.inspection.grad_cam(model, np.zeros((1, 32, 32, 3)))
    >>> maps.shape
    (1, 32, 32)

    Args:
        model: a model built by `transfer(..., num_classes=N)` (its output may
            be followed by a softmax, as the command line's runs are).
        images: `(N, height, width, 3)` pixels, as the model takes them.
        classes: the class of each image's map (default: the model's top).

    Returns:
        `(N, height, width)` maps in [0, 1], resized to the images.
    """
    parts = _parts(model)
    images = np.asarray(images, "float32")
    features = _numpy(parts["features"](parts["prepare"](images)))
    logits = _numpy(parts["score"](features))
    classes = logits.argmax(-1) if classes is None else np.asarray(classes).reshape(-1)
    picked = keras.ops.convert_to_tensor(np.eye(logits.shape[-1], dtype="float32")[classes])
    gradients = _gradient(lambda f: keras.ops.multiply(parts["score"](f), picked), features)
    if features.ndim == 3:  # a transformer's tokens: drop the class (and register) tokens
        side = int(np.sqrt(features.shape[1]))
        features = features[:, -side * side :].reshape(len(images), side, side, -1)
        gradients = gradients[:, -side * side :].reshape(features.shape)
    weights = gradients.mean(axis=(1, 2), keepdims=True)
    maps = np.maximum((weights * features).sum(-1), 0.0)
    maps = maps / np.maximum(maps.max(axis=(1, 2), keepdims=True), 1e-12)
    resized = keras.ops.image.resize(maps[..., None], images.shape[1:3], "bilinear")
    return np.clip(keras.ops.convert_to_numpy(resized)[..., 0], 0.0, 1.0)


def _parts(model):
    """`transfer()`'s model as three functions: pixels to the backbone's
    input, that to the spatial features, and those to the class logits."""
    names = [layer.name for layer in model.layers]
    if "backbone" not in names or "head" not in names:
        raise ValueError(
            "Grad-CAM reads a model built by keras_transfer.transfer(..., num_classes=N), with "
            "a `backbone` and a `head`. Received: a model with the layers "
            f"{names[:8]}"
        )
    backbone, head = model.get_layer("backbone"), model.get_layer("head")
    pools = [layer for layer in backbone.layers if layer.name == f"{backbone.name}_pool_0"]
    if len(pools) != 1 or len(backbone.outputs) != 1:
        raise ValueError(
            "Grad-CAM needs one feature map: the backbone must have one tap. Received: "
            f"a backbone with {len(backbone.outputs)} outputs"
        )
    pool = pools[0]
    # A transformer's pooling reads its class token, which no patch token of
    # the last layer's output reaches again: the map is taken at the input
    # of the last block, whose attention mixes the patches into it.
    top = [pool]
    if len(pool.input.shape) == 3 and getattr(backbone, "blocks", None):
        top = [backbone.get_layer(name) for name in backbone.blocks[-1][1]] + top
        if any(isinstance(layer.input, (list, tuple, dict)) for layer in top):
            raise ValueError(
                "Grad-CAM follows a transformer's last block as a chain of layers with one "
                f"input each. Received: a last block of {[layer.name for layer in top]}"
            )
    features = keras.Model(backbone.inputs, top[0].input)

    def rest(f):
        for layer in top:
            f = layer(f, training=False)
        return f

    before = [
        model.get_layer(name)
        for name in names[1 : names.index("backbone")]
        if name != "augmentation"  # inference: no augmentation
    ]

    def prepare(x):
        for layer in before:
            x = layer(x, training=False)
        return x

    return {
        "prepare": prepare,
        "features": lambda x: features(x, training=False),
        "score": lambda f: head(rest(f), training=False),
    }


def _numpy(x):
    # A trainable torch model's outputs carry a graph, which NumPy refuses.
    return keras.ops.convert_to_numpy(keras.ops.stop_gradient(x))


def _gradient(fn, x):
    """d sum(fn(x)) / dx, as NumPy, on the running backend."""
    backend = keras.backend.backend()
    x = np.asarray(x, "float32")
    if backend == "tensorflow":
        import tensorflow as tf

        variable = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(variable)
            total = tf.reduce_sum(fn(variable))
        return tape.gradient(total, variable).numpy()
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(lambda v: fn(v).sum())(x))
    if backend == "torch":
        import torch

        variable = torch.tensor(x, requires_grad=True)
        fn(variable).sum().backward()
        return variable.grad.detach().cpu().numpy()
    raise ValueError(f"Grad-CAM runs on TensorFlow, JAX and torch. Received: backend {backend!r}")


def write_html_report(path, metrics, images):
    """One self-contained page: the metrics, the per-class table, the most
    confused pairs and the top losses, with `images` (`{caption: png path}`)
    embedded as data URIs. No script, no network."""
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{row['precision']:.4f}</td>"
        f"<td>{row['recall']:.4f}</td><td>{row['support']}</td></tr>"
        for name, row in metrics["per_class"].items()
    )
    confused = "".join(
        f"<tr><td>{html.escape(t)}</td><td>{html.escape(p)}</td><td>{n}</td></tr>"
        for t, p, n in metrics.get("most_confused", [])
    )
    losses = "".join(
        f"<tr><td>{html.escape(row['path'])}</td><td>{html.escape(row['true'])}</td>"
        f"<td>{html.escape(row['predicted_class'])}</td><td>{row['probability']:.4f}</td>"
        f"<td>{row['loss']:.4f}</td></tr>"
        for row in metrics.get("top_losses", [])
    )
    figures = "".join(
        f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,"
        f"{base64.b64encode(png.read_bytes()).decode()}'><figcaption>{html.escape(caption)}"
        "</figcaption></figure>"
        for caption, png in images.items()
        if png is not None and png.is_file()
    )
    unknown = metrics.get("unknown")
    if unknown:
        accepted = unknown["accuracy_accepted"]
        unknown = (
            f"<p>Unknown: <b id='images-unknown'>{unknown['images_unknown']}</b> images "
            f"({unknown['share_unknown']:.1%}) score below the threshold "
            f"{unknown['threshold']:.3f} (predict answers unknown there); accuracy of the "
            f"rest <b id='accuracy-accepted'>{'-' if accepted is None else f'{accepted:.4f}'}"
            "</b>.</p>"
        )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>keras-transfer evaluation</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px}}
img{{max-width:100%}}</style></head><body>
<h1>Evaluation of {html.escape(str(metrics.get("model", "")))}</h1>
<p>Accuracy <b id="accuracy">{metrics["accuracy"]:.4f}</b> (balanced:
<b id="balanced-accuracy">{metrics["balanced_accuracy"]:.4f}</b>) on
<span id="images">{metrics["images"]}</span> images of {html.escape(str(metrics["data_dir"]))}.</p>
{unknown or ""}
<h2>Per class</h2><table id="per-class"><tr><th>class</th><th>precision</th><th>recall</th>
<th>support</th></tr>{rows}</table>
<h2>Most confused (true, predicted, images)</h2><table id="most-confused">{confused}</table>
<h2>Top losses</h2><table id="top-losses"><tr><th>file</th><th>true</th><th>predicted</th>
<th>probability</th><th>loss</th></tr>{losses}</table>
{figures}
</body></html>
"""
    atomic_write(path, lambda f: f.write(page.encode()))
