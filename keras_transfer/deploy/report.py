"""A run's report: accuracy, per-class precision and recall, the confusion
matrix, and the plots the command line writes."""

import contextlib
import json
import pathlib
import shutil

import numpy as np

from keras_transfer.heads.calibration import BINS, reliability
from keras_transfer.utils import _io
from keras_transfer.utils._io import atomic_write

__all__ = [
    "RUN_FILES",
    "check_plotting",
    "classification_report",
    "is_run",
    "output_dir",
    "plot_bars",
    "plot_confusion",
    "plot_images",
    "plot_curves",
    "plot_reliability",
    "staging",
    "write_json",
]

# What `fit`, `evaluate`, `demo`, `rank` and `export` write: a folder holding only these (and at
# least one report) is a run, the only kind `overwrite` may replace.
RUN_FILES = frozenset(
    {
        "model.keras",
        "config.json",
        "metrics.json",
        "curves.png",
        "confusion.png",
        "evaluation",
        "results.json",
        "comparison.png",
        "rank.json",
        "rank.png",
        "export",
        "top_losses.png",
        "gradcam.png",
        "reliability.png",
        "report.html",
        "model.tflite",
        "model.onnx",
        "saved_model",
        "labels.txt",
        "export.json",
    }
)
_REPORTS = ("metrics.json", "results.json", "rank.json", "export.json")


def is_run(path):
    """Whether `path` is a run directory that keras-transfer wrote."""
    path = pathlib.Path(path)
    if not path.is_dir():
        return False
    names = {p.name for p in path.iterdir() if not p.name.startswith(".")}
    return names <= RUN_FILES and any(name in names for name in _REPORTS)


def output_dir(out, overwrite, inputs=(), argument="--out"):
    """Checks a run's output directory before any work is done.

    It may not be the current directory or a parent of it, nor hold or lie
    inside the input data. An existing non-empty one needs `overwrite`, and
    even then only a run (see `is_run`) is replaced.
    """
    out = pathlib.Path(out)
    if _io.is_inside(pathlib.Path.cwd(), out):
        raise ValueError(
            f"{argument} may not be the current directory or a folder above it: a run "
            f"replaces its folder. Received: {argument}={str(out)!r}"
        )
    for data in inputs:
        if data is not None and (_io.is_inside(out, data) or _io.is_inside(data, out)):
            raise ValueError(
                f"{argument} may not hold or lie inside the input data {str(data)!r}. "
                f"Received: {argument}={str(out)!r}"
            )
    if out.exists() and not out.is_dir():
        raise FileExistsError(
            f"{argument} must be a directory; {str(out)!r} is a file. Received: "
            f"{argument}={str(out)!r}"
        )
    if out.is_dir() and any(not p.name.startswith(".") for p in out.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"{str(out)!r} already holds files (an earlier run?): pass --overwrite to "
                f"replace it, or choose another {argument}"
            )
        if not is_run(out):
            found = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
            # What a run never writes is what makes the folder not a run.
            foreign = [name for name in found if name not in RUN_FILES] or found
            raise FileExistsError(
                f"{str(out)!r} is not a keras-transfer run (it holds {foreign[:5]}, which no "
                "run writes): --overwrite replaces only a folder that a run wrote. Choose "
                f"another {argument}, or move those files. Received: {argument}={str(out)!r}"
            )
    return out


@contextlib.contextmanager
def staging(out, overwrite):
    """Writes a run into a hidden sibling folder, then swaps it into place:
    an interrupted run never leaves a half-written report, and the old run
    is deleted only once the new one is in place."""
    out = pathlib.Path(out)
    if out.is_symlink():
        # Through a link, the run replaces the folder it points to; the link stays.
        out = out.resolve()
    stage = _io.staging_dir(out)
    try:
        yield stage
        if out.exists():
            output_dir(out, overwrite)  # it may have changed during the run
        _io.replace_dir(stage, out)
    finally:
        if stage.exists():
            shutil.rmtree(stage)


def classification_report(y_true, y_pred, class_names):
    """Accuracy, per-class precision/recall/support and the confusion matrix.

    Example:

    >>> report = keras_transfer.report.classification_report(
    ...     [0, 0, 1, 1], [0, 1, 1, 1], ["ant", "bee"])
    >>> report["accuracy"], report["confusion_matrix"]
    (0.75, [[1, 1], [0, 2]])
    >>> report["per_class"]["bee"]["precision"], report["balanced_accuracy"]
    (0.6667, 0.75)

    Args:
        y_true, y_pred: integer labels.
        class_names: one name per class, in label order.

    Returns:
        A JSON-ready dict: `accuracy`, `balanced_accuracy` (the mean of
        the recalls of the classes present: each class counts alike, as a
        rare one should), `per_class` (name -> precision, recall, support)
        and `confusion_matrix` (rows: true class).
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    k = len(class_names)
    confusion = np.zeros((k, k), int)
    np.add.at(confusion, (y_true, y_pred), 1)
    correct = np.diag(confusion)
    predicted, support = confusion.sum(0), confusion.sum(1)
    per_class = {
        name: {
            "precision": round(float(correct[i] / predicted[i]), 4) if predicted[i] else 0.0,
            "recall": round(float(correct[i] / support[i]), 4) if support[i] else 0.0,
            "support": int(support[i]),
        }
        for i, name in enumerate(class_names)
    }
    present = support > 0
    return {
        "accuracy": float(np.mean(y_true == y_pred)),
        "balanced_accuracy": float(np.mean(correct[present] / support[present])),
        "per_class": per_class,
        "confusion_matrix": confusion.tolist(),
    }


def write_json(path, data):
    """Writes `data` as indented JSON, atomically."""
    atomic_write(path, lambda f: f.write(json.dumps(data, indent=2, default=_plain).encode()))


def plot_curves(history, phases, path):
    """Loss and accuracy per epoch, train and validation, with phase boundaries.

    Args:
        history: a `History.history` dict.
        phases: `[{"name", "first_epoch", "epochs"}]`; a dashed line marks
            where each phase after the first begins.
        path: the `.png` to write.
    """
    fig = _figure(figsize=(10, 3.8))
    axes = fig.subplots(1, 2)
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for key, style in ((metric, "-o"), (f"val_{metric}", "--o")):
            values = history.get(key)
            if values:
                epochs = np.arange(1, len(values) + 1)
                ax.plot(epochs, values, style, markersize=3, label=key.replace("_", " "))
        for phase in phases[1:]:
            ax.axvline(phase["first_epoch"] + 0.5, color="grey", linestyle=":")
            ax.text(
                phase["first_epoch"] + 0.6,
                ax.get_ylim()[1],
                phase["name"],
                va="top",
                fontsize=8,
                color="grey",
            )
        ax.set(xlabel="epoch", ylabel=metric, title=metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    _save(fig, path)


def plot_confusion(confusion, class_names, path):
    """The confusion matrix as a heat map with counts (rows: true class)."""
    confusion = np.asarray(confusion)
    size = 2.5 + 0.45 * len(class_names)
    fig = _figure(figsize=(size + 1, size))
    ax = fig.subplots()
    image = ax.imshow(confusion, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046)
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=45, ha="right")
    ax.set_yticks(ticks, class_names)
    threshold = confusion.max() / 2 if confusion.size else 0
    for (i, j), count in np.ndenumerate(confusion):
        ax.text(
            j,
            i,
            str(count),
            ha="center",
            va="center",
            color="white" if count > threshold else "black",
        )
    ax.set(xlabel="predicted", ylabel="true", title="confusion matrix")
    _save(fig, path)


def plot_reliability(probabilities, labels, path, bins=BINS):
    """The reliability diagram: per bin of the top probability, the share of
    right answers against the confidence (calibrated on the diagonal), and
    under it how many images each bin holds."""
    confidence, accuracy, share = reliability(probabilities, labels, bins)
    centres = (np.arange(bins) + 0.5) / bins
    fig = _figure(figsize=(4.6, 5.2))
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    top.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
    top.bar(centres, np.nan_to_num(accuracy), width=1 / bins, color="tab:blue", alpha=0.8)
    top.plot(confidence, accuracy, "o", color="tab:orange", markersize=4)
    top.set(ylim=(0, 1), ylabel="accuracy", title="reliability (bars: accuracy; dots: confidence)")
    bottom.bar(centres, share, width=1 / bins, color="tab:grey")
    bottom.set(xlim=(0, 1), xlabel="confidence (top probability)", ylabel="images")
    _save(fig, path)


def plot_bars(values, path, title="validation accuracy", ylim=(0, 1.05)):
    """A bar chart of `{label: value}` (the demo's comparison, `rank`'s
    scores with `ylim=None`)."""
    fig = _figure(figsize=(1.6 * len(values) + 2, 3.8))
    ax = fig.subplots()
    bars = ax.bar(list(values), list(values.values()), color="tab:blue")
    ax.bar_label(bars, fmt="%.3f")
    ax.set(title=title)
    if ylim is not None:
        ax.set(ylim=ylim)
    ax.tick_params(axis="x", labelsize=8)
    _save(fig, path)


def plot_images(images, titles, path, maps=None, columns=4):
    """A grid of images with a title each, and optionally a heat map over
    each (Grad-CAM)."""
    rows = max(1, -(-len(images) // columns))
    fig = _figure(figsize=(2.6 * columns, 2.9 * rows))
    for i, image in enumerate(images):
        ax = fig.add_subplot(rows, columns, i + 1)
        ax.imshow(np.asarray(image).astype("uint8"))
        if maps is not None:
            ax.imshow(maps[i], cmap="jet", alpha=0.45, vmin=0, vmax=1)
        ax.set_title(titles[i], fontsize=8)
        ax.axis("off")
    _save(fig, path)


def _save(fig, path):
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110, bbox_inches="tight"))


def check_plotting():
    """Raises ImportError, saying how to install it, when matplotlib is missing."""
    _figure()


def _figure(**kwargs):
    # A bare Figure, not pyplot: no GUI backend, no global figure state.
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(
            "The report's plots need matplotlib: pip install 'keras-transfer[plot]' "
            "(or matplotlib)."
        ) from error
    return Figure(**kwargs)


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
