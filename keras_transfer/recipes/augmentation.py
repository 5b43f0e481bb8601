"""The adaptive recipe's default augmentation for photos, in the input
pipeline: a random crop of each image resized back to its size (timm's
random resized crop, from Keras layers) and a horizontal flip.

It lives in the pipeline, not in the model: the saved model has no
augmentation part, and the same layers serve arrays, datasets (the
adaptive recipe reads them into arrays) and `ktr.ImageStream` folders
(decoded by the stream's threads, then drawn through the layers batch by
batch, in order). A model built with its own `augmentation` part keeps it,
and the recipe adds nothing.
"""

import collections
import concurrent.futures

import keras
import numpy as np

__all__ = [
    "SHIFT",
    "ZOOM",
    "AugmentedBatches",
    "AugmentedStream",
    "augment",
    "check_augmentation",
    "describe",
    "photo_augmentation",
]

# The crop: each side zoomed in by up to 40% (so 36% to 100% of the image's
# area, and aspect ratios from 0.6 to 1.67), its centre moved by up to 10%
# of the side: timm's random resized crop, scale (0.36, 1), without its
# smallest crops, which lose the object on small photos.
ZOOM = (-0.4, 0.0)
SHIFT = 0.1


def photo_augmentation(flip=True, seed=None):
    """The default augmentation's layers: a random resized crop, then a
    horizontal flip unless `flip=False` (where mirroring changes the class:
    text, digits, left and right).

    Example:

    >>> [type(layer).__name__ for layer in keras_transfer.augmentation.photo_augmentation()]
    ['RandomTranslation', 'RandomZoom', 'RandomFlip']

    Args:
        flip: add the horizontal flip.
        seed: the layers' seed.
    """
    layers = [
        keras.layers.RandomTranslation(SHIFT, SHIFT, fill_mode="reflect", seed=seed),
        keras.layers.RandomZoom(ZOOM, ZOOM, fill_mode="reflect", seed=seed),
    ]
    if flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
    return layers


def check_augmentation(augmentation, flip):
    """The one check of `fine_tune`'s `augmentation` and `flip` arguments,
    made before any data is read."""
    if not isinstance(flip, bool):
        raise TypeError(f"`flip` must be True or False. Received: flip={flip!r}")
    layers = augmentation if isinstance(augmentation, (list, tuple)) else [augmentation]
    if augmentation in ("auto", None) or all(isinstance(x, keras.layers.Layer) for x in layers):
        return
    raise TypeError(
        "`augmentation` must be 'auto' (the recipe's photo augmentation, unless the model has "
        "its own), None (none), or a Keras layer or list of layers. Received: "
        f"augmentation={augmentation!r}"
    )


def describe(layers):
    """The layers as short strings, for the decision record."""
    return [
        f"{type(layer).__name__}"
        + "".join(
            f" {key}={value}"
            for key, value in layer.get_config().items()
            if key in ("mode", "height_factor", "width_factor", "factor")
        )
        for layer in layers
    ]


class AugmentedBatches(keras.utils.PyDataset):
    """`(images, labels)` arrays in batches, shuffled each epoch, each batch
    drawn through `layers` in training mode.

    Args:
        x, y: the images (pixels 0-255) and labels.
        batch_size: the batch size.
        layers: the augmentation layers.
        seed: the shuffling's seed.
    """

    def __init__(self, x, y, batch_size, layers, seed=None):
        super().__init__()
        self.x, self.y, self.batch_size, self.layers = x, y, batch_size, list(layers)
        self._rng = np.random.default_rng(seed)
        self._order = self._rng.permutation(len(x))

    def __len__(self):
        return -(-len(self.x) // self.batch_size)

    def __getitem__(self, index):
        rows = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        return augment(self.x[rows], self.layers), self.y[rows]

    def on_epoch_end(self):
        self._order = self._rng.permutation(len(self.x))


class AugmentedStream(keras.utils.PyDataset):
    """A `ktr.ImageStream`'s batches drawn through `layers` in training mode.

    The stream's threads decode the next batches ahead; the layers draw in
    this thread, batch after batch, so the same seeds give the same
    augmentations (Keras's workers would call them in any order). Pass
    `shuffle=False` to `fit`: the stream shuffles each epoch itself.

    Args:
        stream: the `ImageStream`.
        layers: the augmentation layers.
    """

    def __init__(self, stream, layers):
        super().__init__()
        self.stream, self.layers = stream, list(layers)
        self._pool = concurrent.futures.ThreadPoolExecutor(max(stream.workers, 1))
        self._ahead = collections.OrderedDict()

    def __len__(self):
        return len(self.stream)

    def __getitem__(self, index):
        last = min(index + self.stream.workers + self.stream.max_queue_size, len(self))
        for ahead in range(index, last):
            if ahead not in self._ahead:
                self._ahead[ahead] = self._pool.submit(self.stream.__getitem__, ahead)
        images, labels = self._ahead.pop(index).result()
        return augment(images, self.layers), labels

    def on_epoch_end(self):
        # The stream's next order: batches decoded in this one's are stale.
        for future in self._ahead.values():
            future.cancel()
        self._ahead.clear()
        self.stream.on_epoch_end()


def augment(images, layers):
    """`images` drawn through `layers` in training mode, as a float32 array."""
    x = keras.ops.convert_to_tensor(np.asarray(images, "float32"))
    for layer in layers:
        x = layer(x, training=True)
    return keras.ops.convert_to_numpy(x)
