"""The adaptive recipe's training data: a stream kept as a stream, anything
else read into arrays, and `fit`'s data for some of its rows."""

import keras
import numpy as np
import pytest

import keras_transfer as ktr
from keras_transfer.recipes import training_data
from keras_transfer.recipes.augmentation import AugmentedBatches, AugmentedStream
from tests.conftest import pixels, runs_once_in

X = pixels(10, size=8)
Y = np.arange(10) % 2


class _Batches(keras.utils.PyDataset):
    def __init__(self, batches):
        super().__init__()
        self.batches = batches

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, index):
        return self.batches[index]


@pytest.fixture
def stream(tmp_path):
    from PIL import Image

    for name in ("ants", "bees"):
        (tmp_path / name).mkdir()
        for i in range(3):
            Image.new("RGB", (12, 10), "red" if name == "ants" else "blue").save(
                tmp_path / name / f"{i}.png"
            )
    return ktr.ImageStream(tmp_path, (8, 8), batch_size=2)


@runs_once_in("torch")
def test_a_stream_stays_a_stream_and_anything_else_is_read_into_arrays(stream):
    x, y = training_data.training_images(stream)
    assert x is stream and y.tolist() == [0, 0, 0, 1, 1, 1]
    assert training_data.subset_rows(stream, [1, 4]).rows.tolist() == [1, 4]
    np.testing.assert_array_equal(training_data.subset_rows(X, [1, 4]), X[[1, 4]])
    x, y = training_data.training_images(_Batches([(X[:6], Y[:6]), (X[6:], Y[6:])]))
    np.testing.assert_array_equal(x, X)
    np.testing.assert_array_equal(y, Y)
    with pytest.raises(ValueError, match="must yield batches of images.*shaped \\(6, 8, 3\\)"):
        training_data.training_images(_Batches([(X[0, :6], Y[:6])]))
    with pytest.raises(ValueError, match="Received: a dataset that yielded no batches"):
        training_data.training_images(_Batches([]))
    with pytest.raises(ValueError, match="Received: an ImageStream with shard=\\(0, 2\\)"):
        training_data.training_images(
            ktr.ImageStream(stream.paths[0].parents[1], (8, 8), shard=(0, 2))
        )


@runs_once_in("torch")
def test_fit_data_holds_the_rows_asked_for(stream):
    rows = np.array([0, 3, 5])
    plain = training_data.fit_data(X, Y, rows, 2, [], seed=0)
    np.testing.assert_array_equal(plain["x"], X[rows])
    assert plain["y"].tolist() == Y[rows].tolist() and plain["batch_size"] == 2
    flip = [keras.layers.RandomFlip("horizontal")]
    augmented = training_data.fit_data(X, Y, rows, 2, flip, seed=0)["x"]
    assert isinstance(augmented, AugmentedBatches) and len(augmented) == 2
    streamed = training_data.fit_data(stream, None, rows, 2, flip, seed=0)
    assert isinstance(streamed["x"], AugmentedStream) and streamed["shuffle"] is False
    part = training_data.fit_data(stream, None, rows, 2, [], seed=0)["x"]
    assert sorted(part.rows.tolist()) == rows.tolist() and part.shuffle
