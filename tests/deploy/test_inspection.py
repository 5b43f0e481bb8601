"""`ktr.inspection`: the top losses, the most confused pairs, and Grad-CAM,
whose peak must fall on the one thing that decides the class."""

import keras
import numpy as np
import pytest

import keras_transfer as ktr
from keras_transfer.deploy.inspection import TopLosses, grad_cam, most_confused
from tests.conftest import tiny_backbone


def test_top_losses_keep_the_k_most_confident_mistakes():
    worst = TopLosses(2)
    worst.add(["a", "b"], np.array([[0.6, 0.4], [0.1, 0.9]]), [1, 0])
    worst.add(["c", "d"], np.array([[0.99, 0.01], [0.3, 0.7]]), [0, 0])
    rows = worst.rows()
    # b (p(true) 0.1) and d (0.3); a (0.4) is dropped, c is right.
    assert [row["path"] for row in rows] == ["b", "d"]
    assert rows[0]["loss"] == pytest.approx(-np.log(0.1))
    assert rows[0]["predicted"] == 1 and rows[0]["probability"] == pytest.approx(0.9)
    with pytest.raises(ValueError, match="Received: k=0"):
        TopLosses(0)


def test_most_confused_pairs_come_first():
    confusion = [[5, 3, 0], [1, 4, 0], [0, 2, 6]]
    assert most_confused(confusion, ["a", "b", "c"]) == [
        ("a", "b", 3),
        ("c", "b", 2),
        ("b", "a", 1),
    ]
    assert most_confused(confusion, ["a", "b", "c"], min_count=2) == [("a", "b", 3), ("c", "b", 2)]


def _squares(n, seed):
    """Dim noise, and in every other image (class 1) one bright 8 px square:
    the only evidence of class 1 is local, where the square is."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 80, (n, 32, 32, 3)).astype("float32")
    labels = np.arange(n) % 2
    corners = rng.integers(0, 25, (n, 2))
    for image, label, (row, col) in zip(images, labels, corners):
        if label:
            image[row : row + 8, col : col + 8] = 255
    return images, labels, corners


def test_grad_cam_peaks_on_the_square_that_decides_the_class():
    images, labels, _ = _squares(256, 0)
    keras.utils.set_random_seed(0)
    model = ktr.transfer(
        tiny_backbone(top=False),
        2,
        weights=None,
        input_shape=(32, 32, 3),
        preprocessing="unit",
        strategy="fine_tune",
    )
    ktr.unfreeze(model)
    model.compile(
        keras.optimizers.Adam(3e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    # 128 steps at 3e-3: with 24 steps (128 images, batch 32) the model did
    # not always learn the squares, and at 1e-2 JAX's default random stream
    # (not the classic one `make test` sets) left seed 0 at chance; at 3e-3
    # it learnt them on 4 seeds of every backend and both JAX streams, and
    # the peak fell on the square in 19 or 20 images of 20.
    model.fit(images, labels, epochs=8, batch_size=16, verbose=0)
    test, test_labels, corners = _squares(40, 1)
    assert model.evaluate(test, test_labels, verbose=0)[1] >= 0.95
    squares = test_labels == 1  # 20 images with a square, mapped for their class
    maps = grad_cam(model, test[squares])
    assert maps.shape == (20, 32, 32) and maps.min() >= 0 and maps.max() <= 1
    inside = 0
    for heat, (row, col) in zip(maps, corners[squares]):
        peak_row, peak_col = np.unravel_index(heat.argmax(), heat.shape)
        inside += int(row <= peak_row < row + 8 and col <= peak_col < col + 8)
    assert inside >= 16, f"the peak fell on the square in {inside} of 20 images"


def test_grad_cam_says_which_models_it_reads():
    plain = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 3)])
    with pytest.raises(ValueError, match="built by keras_transfer.transfer"):
        grad_cam(plain, np.zeros((1, 8, 8, 3)))
