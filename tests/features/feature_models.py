"""What the feature-store tests share: tiny data, a feature model, a batch
counter, and the marker of the store's backend-free checks."""

import keras
import numpy as np

import keras_transfer as kt
from tests.conftest import pixels, runs_once_in, tiny_backbone

X = pixels(10)
Y = np.arange(10) % 2


def _feature_model(name="tiny"):
    return kt.transfer(tiny_backbone(top=False, name=name), preprocessing="tf")


class _Counting:
    """Counts (or forbids) the feature model's batches."""

    def __init__(self, model, forbid=False):
        self.model, self.calls, self.forbid = model, 0, forbid
        self.original = model.predict_on_batch
        model.predict_on_batch = self

    def __call__(self, x):
        if self.forbid:
            raise AssertionError("the backbone ran on a cache hit")
        self.calls += len(x)
        return self.original(x)


# The store's keys, files and checks are NumPy and file work whatever the
# backend (the extraction under them is tested on every backend above): run once.
store_logic = runs_once_in("jax")


class _Batches(keras.utils.PyDataset):
    def __init__(self, x, y):
        super().__init__()
        self.x, self.y = x, y

    def __len__(self):
        return 3

    def __getitem__(self, i):
        return self.x[4 * i : 4 * i + 4], self.y[4 * i : 4 * i + 4]


def _streams():
    import tensorflow as tf

    return {
        "tf.data": lambda x, y: tf.data.Dataset.from_tensor_slices((x, y)).batch(4),
        "PyDataset": _Batches,
        "generator": lambda x, y: ((x[i : i + 3], y[i : i + 3]) for i in range(0, 10, 3)),
    }


def _class_folder(root, classes):
    from PIL import Image

    for index, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(2):
            image = pixels(1, seed=10 * index + i)[0].astype("uint8")
            Image.fromarray(image).save(root / name / f"{name}{i}.png")
