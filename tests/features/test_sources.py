"""Data sources: arrays, folders and streams, and the keys that tell them
apart."""

import keras
import numpy as np
import pytest

import keras_transfer as kt
from tests.conftest import pixels
from tests.features.feature_models import (
    X,
    Y,
    _class_folder,
    _Counting,
    _feature_model,
    _streams,
    store_logic,
)


def test_streams_tf_data_pydataset_and_generators():
    import tensorflow as tf

    model = _feature_model()
    expected = model.predict(X, verbose=0)

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return X[4 * i : 4 * i + 4], Y[4 * i : 4 * i + 4]

    sources = {
        "tf.data": tf.data.Dataset.from_tensor_slices((X, Y)).batch(4),
        "PyDataset": Batches(),
        "generator": ((X[i : i + 3], Y[i : i + 3]) for i in range(0, 10, 3)),
    }
    for name, data in sources.items():
        feats = kt.extract_features(model, data, progress=False)
        np.testing.assert_allclose(feats.x, expected, rtol=1e-5, atol=1e-6, err_msg=name)
        assert feats.labels.tolist() == Y.tolist(), name


def test_directory_of_images_skips_undecodable_files(tmp_path):
    from PIL import Image

    for label in ("ants", "bees"):
        (tmp_path / label).mkdir()
        for i in range(3):
            Image.fromarray(pixels(1, seed=i)[0].astype("uint8")).save(
                tmp_path / label / f"{i}.jpg"
            )
    (tmp_path / "bees" / "notes.txt").write_text("not an image")
    with pytest.warns(UserWarning, match=r"Skipped 1 file.*notes.txt"):
        feats = kt.extract_features(_feature_model(), tmp_path, batch_size=4, progress=False)
    assert feats.x.shape == (6, 16)
    assert feats.class_names == ["ants", "bees"] and feats.labels.tolist() == [0, 0, 0, 1, 1, 1]


@store_logic
@pytest.mark.parametrize("suffix", ["", ".npz"])
def test_a_store_never_answers_for_another_stream(tmp_path, suffix):
    model = _feature_model()
    other = X[::-1].copy()
    for name, stream in _streams().items():
        cache = tmp_path / f"{name}{suffix}"
        first = kt.extract_features(model, stream(X, Y), cache=cache, shard_size=4, progress=False)
        counter = _Counting(model, forbid=True)  # the same rows, batched alike or not
        hit = kt.extract_features(model, _streams()["generator"](X, Y), cache=cache, progress=False)
        np.testing.assert_array_equal(np.asarray(hit.x), np.asarray(first.x))
        for images, labels in ((other, Y), (X, 1 - Y)):
            with pytest.raises(ValueError, match="made from other data"):
                kt.extract_features(model, stream(images, labels), cache=cache, progress=False)
        del model.predict_on_batch, counter
        fresh = kt.extract_features(
            model, stream(other, 1 - Y), cache=cache, overwrite=True, progress=False
        )
        np.testing.assert_allclose(
            np.asarray(fresh.x), model.predict(other, verbose=0), rtol=1e-5, atol=1e-6, err_msg=name
        )
        assert np.asarray(fresh.labels).tolist() == (1 - Y).tolist(), name


@store_logic
def test_a_longer_or_shorter_stream_is_not_answered_by_the_store(tmp_path):
    model = _feature_model()
    kt.extract_features(
        model, ((X[i : i + 5], Y[i : i + 5]) for i in (0, 5)), cache=tmp_path / "s", progress=False
    )
    with pytest.raises(ValueError, match="rows from 10 on"):
        kt.extract_features(
            model, iter([(X, Y), (X[:2], Y[:2])]), cache=tmp_path / "s", progress=False
        )
    with pytest.raises(ValueError, match="rows 0..10"):
        kt.extract_features(model, iter([(X[:6], Y[:6])]), cache=tmp_path / "s", progress=False)


@store_logic
def test_every_row_of_an_array_is_in_the_key(tmp_path):
    model = _feature_model()
    images = pixels(130)  # the old key sampled every other row of these
    kt.extract_features(model, images, cache=tmp_path / "s", batch_size=64, progress=False)
    changed = images.copy()
    changed[1] += 1.0
    with pytest.raises(ValueError, match="differ in: data"):
        kt.extract_features(model, changed, cache=tmp_path / "s", batch_size=64, progress=False)


@store_logic
def test_a_folder_key_covers_class_names_and_relative_paths(tmp_path):
    model = _feature_model()
    photos = tmp_path / "photos"
    _class_folder(photos, ["a", "b"])
    first = kt.extract_features(model, photos, cache=tmp_path / "s", progress=False)
    (photos / "b").rename(photos / "bees")  # renamed class
    with pytest.raises(ValueError, match="differ in: data"):
        kt.extract_features(model, photos, cache=tmp_path / "s", progress=False)
    renamed = kt.extract_features(
        model, photos, cache=tmp_path / "s", overwrite=True, progress=False
    )
    assert renamed.class_names == ["a", "bees"]
    (photos / "a").rename(photos / "swap")  # swapped classes
    (photos / "bees").rename(photos / "a")
    (photos / "swap").rename(photos / "bees")
    with pytest.raises(ValueError, match="differ in: data"):
        kt.extract_features(model, photos, cache=tmp_path / "s", progress=False)
    swapped = kt.extract_features(
        model, photos, cache=tmp_path / "s", overwrite=True, progress=False
    )
    # The same images, now under the other label.
    np.testing.assert_allclose(np.asarray(swapped.x)[:2], np.asarray(first.x)[2:], rtol=1e-5)
    assert swapped.labels.tolist() == [0, 0, 1, 1]
