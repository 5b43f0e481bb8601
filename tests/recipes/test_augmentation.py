"""The default augmentation: a random resized crop and a flip, in the input
pipeline, drawn the same for arrays and datasets."""

import keras
import numpy as np
import pytest

from keras_transfer.recipes import augmentation
from tests.conftest import pixels


def test_the_default_layers_and_flip_off():
    names = [type(layer).__name__ for layer in augmentation.photo_augmentation(flip=False)]
    assert names == ["RandomTranslation", "RandomZoom"]
    described = augmentation.describe(augmentation.photo_augmentation())
    assert described[-1] == "RandomFlip mode=horizontal" and "height_factor" in described[1]


def test_batches_are_shuffled_each_epoch_and_augmented_in_shape():
    x, y = pixels(10, size=16), np.arange(10)
    batches = augmentation.AugmentedBatches(x, y, 4, augmentation.photo_augmentation(seed=0), 0)
    assert len(batches) == 3
    images, labels = batches[0]
    assert images.shape == (4, 16, 16, 3) and images.dtype == np.float32
    first = [batches[i][1].tolist() for i in range(3)]
    assert sorted(sum(first, [])) == list(range(10))  # every image once an epoch
    batches.on_epoch_end()
    assert [batches[i][1].tolist() for i in range(3)] != first
    assert not np.array_equal(images, x[np.isin(np.arange(10), labels)])  # drawn, not copied


def test_bad_arguments_name_themselves():
    with pytest.raises(TypeError, match="`flip` must be True or False. Received: flip='no'"):
        augmentation.check_augmentation("auto", "no")
    with pytest.raises(TypeError, match="Received: augmentation='flips'"):
        augmentation.check_augmentation("flips", True)
    augmentation.check_augmentation([keras.layers.RandomFlip()], False)
