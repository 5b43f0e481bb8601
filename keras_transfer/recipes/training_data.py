"""The adaptive recipe's training data: a `ktr.ImageStream` kept as a
stream (its slice held out by file, its files decoded as they are needed),
anything else read into arrays within the memory budget; and `fit`'s data
for some of its rows."""

import keras
import numpy as np

from keras_transfer.images.stream import ImageStream
from keras_transfer.recipes.augmentation import AugmentedBatches, AugmentedStream
from keras_transfer.utils import guards

__all__ = ["fit_data", "subset_rows", "training_images"]


def training_images(train):
    """`(images, labels)`: a `ktr.ImageStream` as it is (its files are decoded
    as they are needed, and the slice is held out by file), anything else
    read into arrays."""
    if isinstance(train, ImageStream):
        if train.shard is not None:
            # Each worker would choose from its own part: they could choose
            # differently and stop stepping together.
            raise ValueError(
                "The adaptive recipe chooses on one process and cannot take a sharded "
                "`train`. Pass strategy='fine_tune' (the fixed recipe) to train on several "
                f"workers. Received: an ImageStream with shard={train.shard}"
            )
        return train, train.labels
    x, y = _arrays(train)
    guards.check_finite_values(x, "train", "pixels")
    return x, y


def fit_data(x, y, rows, batch_size, pipeline, seed):
    """`fit`'s data for the images at `rows`, shuffled, through the pipeline."""
    if isinstance(x, ImageStream):
        part = x.subset(rows, shuffle=True, seed=seed)
        return dict(x=AugmentedStream(part, pipeline) if pipeline else part, shuffle=False)
    if pipeline:
        return dict(x=AugmentedBatches(x[rows], y[rows], batch_size, pipeline, seed))
    return dict(x=x[rows], y=y[rows], batch_size=batch_size)


def subset_rows(images, rows):
    """The images at `rows`: a stream of their files, or an array."""
    return images.subset(rows) if isinstance(images, ImageStream) else images[rows]


def _arrays(train):
    """`(images, labels)` as arrays; a finite dataset is read into memory, and
    one of unknown length only up to `guards.memory_budget()`."""
    if isinstance(train, tuple) and len(train) == 2:
        return np.asarray(train[0]), train[1]
    guards.check_finite_length(
        train, "train", "(images, labels) arrays, or adaptive=False with steps_per_epoch"
    )
    if hasattr(train, "as_numpy_iterator"):
        batches = iter(train.as_numpy_iterator())
    elif isinstance(train, keras.utils.PyDataset):
        batches = iter(train)  # its own order; ktr.ImageStream decodes ahead
    else:
        raise ValueError(
            "The adaptive recipe reads `train` into memory: pass (images, labels), a "
            "tf.data.Dataset or a PyDataset of (images, labels) batches. Received: train of "
            f"type {type(train).__name__}"
        )
    images, labels, kept, budget = [], [], 0, guards.memory_budget()
    for batch in batches:
        if not isinstance(batch, tuple) or len(batch) < 2:
            raise ValueError(
                "`train` must yield (images, labels) batches. Received: batches without labels"
            )
        x, y = np.asarray(batch[0]), np.asarray(batch[1])
        if x.ndim != 4:
            raise ValueError(
                "`train` must yield batches of images, shaped (batch, height, width, "
                f"channels): batch it, e.g. train.batch(32). Received: an element of images "
                f"shaped {x.shape}"
            )
        kept += x.nbytes + y.nbytes
        if kept > budget:
            raise ValueError(
                f"`train` does not fit in memory: the adaptive recipe had read {kept:,} bytes "
                f"of it, past its budget of {budget:,} (half the free memory), and it had not "
                "ended. Pass fewer images (train.take(n)), or adaptive=False, whose fit "
                "streams the data."
            )
        images.append(x)
        labels.append(y)
    if not images:
        raise ValueError("`train` is empty. Received: a dataset that yielded no batches")
    return np.concatenate(images), np.concatenate(labels)
