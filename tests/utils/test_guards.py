"""Bad input as a new user makes it: never a hang, never a broken model
reported as a success, and errors that name what the user passed (#25).

Each case names what it checks. The command-line and file-system cases do
not depend on the backend and run once, in the torch process; the ones
that train run on every backend.
"""

import os
import shutil
import urllib.error

import keras
import numpy as np
import pytest
from PIL import Image

import keras_transfer as kt
from keras_transfer.commands import cli
from keras_transfer.features import store
from keras_transfer.images import decoding as image_decoding
from keras_transfer.images import folder as image_folder
from keras_transfer.utils import guards
from tests.conftest import BACKEND, pixels, runs_once_in, tiny_backbone

ONCE = runs_once_in("torch")
X = pixels(12)
Y = np.arange(12) % 2
# The command line on a tiny folder: VGG16 at 32 px builds in a second.
FIT = ["--backbone", "vgg16", "--weights", "none", "--image-size", "32", "--batch-size", "8"]


def _model():
    return kt.transfer(tiny_backbone(top=False), 2, preprocessing="unit")


class _Endless(keras.utils.PyDataset):
    """A PyDataset with no length: Keras reads it as infinite."""

    @property
    def num_batches(self):
        return None

    def __getitem__(self, index):
        return X[:4], Y[:4]


def _endless_generator():
    while True:
        yield X[:4], Y[:4]


def _folder(root, colors, per_class=4, size=(40, 30), fmt="png"):
    for name, color in colors.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", size, color).save(root / name / f"{i}.{fmt}")
    return root


# --- 1. Finite data ----------------------------------------------------------------


def test_infinite_data_is_refused_before_anything_is_read_or_written(tmp_path):
    for recipe in ({}, {"epochs": 1}):
        with pytest.raises(ValueError, match="PyDataset without a length.*Received: train"):
            kt.fine_tune(_model(), _Endless(), verbose=0, **recipe)
    cache = tmp_path / "store"
    with pytest.raises(ValueError, match="PyDataset without a length.*steps=N"):
        kt.extract_features(kt.transfer(tiny_backbone(top=False)), _Endless(), cache=cache)
    assert not cache.exists()
    with pytest.raises(ValueError, match="`features` is a PyDataset without a length"):
        kt.heads.fit_head(_Endless(), 2)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="tf.data cases: the TensorFlow process")
def test_an_infinite_or_unbatched_tf_data_dataset_is_refused():
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices((X, Y))
    with pytest.raises(ValueError, match=r"infinite tf.data.Dataset.*train.take\(n\)"):
        kt.fine_tune(_model(), data.batch(2).repeat(), verbose=0)
    with pytest.raises(ValueError, match="infinite tf.data.Dataset.*steps_per_epoch=N"):
        kt.fine_tune(_model(), data.batch(2).repeat(), epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"batch it, e.g. train.batch\(32\)"):
        kt.fine_tune(_model(), data, verbose=0)
    # Unknown length (after filter) is read, within the memory budget.
    filtered = data.batch(2).repeat().filter(lambda x, y: True)
    guards_share = guards.MEMORY_SHARE
    try:
        guards.MEMORY_SHARE = 1e-12
        with pytest.raises(ValueError, match="does not fit in memory.*had not ended"):
            kt.fine_tune(_model(), filtered, verbose=0)
    finally:
        guards.MEMORY_SHARE = guards_share


def test_a_stream_of_unknown_length_stops_at_its_bound_or_at_steps(monkeypatch, tmp_path):
    model = kt.transfer(tiny_backbone(top=False))
    features = kt.extract_features(model, _endless_generator(), steps=3, progress=False)
    assert len(features) == 12
    monkeypatch.setattr(guards, "MEMORY_SHARE", 1e-12)
    with pytest.raises(ValueError, match="has not ended after 4 images.*Pass steps=N"):
        kt.extract_features(model, _endless_generator(), progress=False)
    monkeypatch.setattr(
        shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(1, 1, 1)
    )  # a full disk: the store's bound
    with pytest.raises(ValueError, match="in the store at .*half the free disk"):
        kt.extract_features(model, _endless_generator(), cache=tmp_path / "s", progress=False)


# --- 2. Non-finite guards -------------------------------------------------------------


def test_non_finite_or_non_positive_learning_rates_are_refused():
    for value in (float("nan"), float("inf"), 0.0, -1.0):
        with pytest.raises(ValueError, match=f"`base_lr` must be a finite number above 0. "
                           f"Received: base_lr={value!r}"):  # fmt: skip
            kt.fine_tune(_model(), (X, Y), base_lr=value, verbose=0)
        with pytest.raises(ValueError, match="`learning_rate` must be a finite number above 0"):
            kt.heads.fit_head(np.ones((4, 3)), 2, labels=[0, 1, 0, 1], learning_rate=value)
    model = _model()
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.raises(ValueError, match="lr_find needs 0 < start < end"):
        kt.lr_find(model, (X, Y), end=float("inf"))


def test_a_loss_that_becomes_non_finite_raises_with_its_epoch():
    # Finite but huge inputs, or rates, overflow float32.
    huge = np.full((8, 3), 3e38, "float32")
    with pytest.raises(guards.NonFiniteLossError, match="fit_head stopped.*in epoch 1"):
        kt.heads.fit_head(huge, 2, labels=np.arange(8) % 2, epochs=3)
    model = _model()
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(guards.NonFiniteLossError, match=r"unfrozen phase.*put back.*in epoch \d"):
        kt.fine_tune(
            model, (X, Y), epochs=2, freeze_epochs=0, base_lr=3e38, schedule="constant",
            batch_size=4, verbose=0,
        )  # fmt: skip
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)


# --- 3. A NaN pixel -------------------------------------------------------------------


def test_a_nan_pixel_is_refused_with_its_count_and_first_index():
    x = X[:2].copy()
    x[1, 5, 6, 2] = np.nan  # one image per class: nothing would be held out
    model = _model()
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match=r"`train` holds 1 NaN or Inf pixels; the first at "
                       r"index \(1, 5, 6, 2\)"):  # fmt: skip
        kt.fine_tune(model, (x, Y[:2]), verbose=0)
    with pytest.raises(ValueError, match=r"1 NaN or Inf pixels"):
        kt.fine_tune(model, (x, Y[:2]), epochs=1, verbose=0)
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)


# --- 4. The folder key ------------------------------------------------------------------


@ONCE
def test_swapped_class_folders_of_equal_files_are_not_a_store_hit(tmp_path):
    root = _folder(tmp_path / "data", {"ants": "red", "bees": "blue"}, fmt="bmp")
    for path in root.rglob("*.bmp"):
        os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    inputs = keras.Input((16, 16, 3))
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(inputs))
    cache = tmp_path / "store"
    first = kt.extract_features(model, root, cache=cache, progress=False)
    assert first.x[0, 0] > first.x[0, 2]  # ants are red
    (root / "ants").rename(root / "tmp")
    (root / "bees").rename(root / "ants")
    (root / "tmp").rename(root / "bees")
    with pytest.raises(ValueError, match="made with different settings.*data"):
        kt.extract_features(model, root, cache=cache, progress=False)
    again = kt.extract_features(model, root, cache=cache, progress=False, overwrite=True)
    fresh = kt.extract_features(model, root, progress=False)
    np.testing.assert_array_equal(again.x, fresh.x)
    assert again.x[0, 2] > again.x[0, 0]  # ants are blue now


# --- The "should fix" list -------------------------------------------------------------


def test_preprocessing_error_names_the_argument():
    with pytest.raises(ValueError, match="`preprocessing` must be 'auto', one of .*"
                       "Received: preprocessing='imagenet'"):  # fmt: skip
        kt.transfer(tiny_backbone(top=False), 2, preprocessing="imagenet")


def test_batch_size_zero_is_refused():
    for recipe in ({}, {"epochs": 1}):
        with pytest.raises(ValueError, match="Received: batch_size=0"):
            kt.fine_tune(_model(), (X, Y), batch_size=0, verbose=0, **recipe)
    with pytest.raises(ValueError, match="Received: batch_size=0"):
        kt.heads.fit_head(np.ones((4, 3)), 2, labels=[0, 1, 0, 1], batch_size=0)


@ONCE
def test_a_runs_own_model_file_gives_its_backbone_weights(tmp_path):
    keras.utils.set_random_seed(1)
    trained = kt.transfer(tiny_backbone(top=False), 2, preprocessing="unit")
    trained.save(tmp_path / "model.keras")
    keras.utils.set_random_seed(2)
    again = kt.transfer(tiny_backbone(top=False), 2, weights=tmp_path / "model.keras")
    for old, new in zip(
        trained.get_layer("backbone").get_weights(), again.get_layer("backbone").get_weights()
    ):
        np.testing.assert_array_equal(old, new)


@ONCE
def test_a_second_writer_of_one_store_is_told_so(tmp_path):
    key = {"id": "k"}
    with store.StoreWriter(tmp_path / "s", key, overwrite=False):
        with pytest.raises(BlockingIOError, match="being written by another process"):
            store.StoreWriter(tmp_path / "s", key, overwrite=False)
    store.StoreWriter(tmp_path / "s", key, overwrite=False).close()  # released


@ONCE
def test_a_store_file_that_links_outside_the_store_is_refused(tmp_path):
    features = kt.Features({"features": np.ones((4, 3), "float32")}, np.arange(4) % 2, None, {})
    path = features.save(tmp_path / "s")
    manifest = store.read_manifest(path)
    name = manifest["shards"][0]["files"]["features"]["file"]
    outside = tmp_path / "outside.npy"
    shutil.copy(path / name, outside)
    (path / name).unlink()
    (path / name).symlink_to(outside)
    with pytest.raises(ValueError, match="a link to .*outside the store: refused"):
        kt.Features.load(path)


@ONCE
def test_a_class_folder_linked_to_another_is_refused(tmp_path):
    root = _folder(tmp_path / "data", {"ants": "red"})
    (root / "bees").symlink_to(root / "ants", target_is_directory=True)
    with pytest.raises(ValueError, match="'ants' and 'bees' .* are the same folder"):
        image_folder.scan(root)


@ONCE
def test_an_image_above_the_pixel_limit_is_not_decoded(tmp_path, monkeypatch):
    monkeypatch.setattr(image_decoding, "MAX_IMAGE_PIXELS", 100 * 100)
    Image.new("RGB", (120, 100)).save(tmp_path / "big.png")
    with pytest.raises(ValueError, match="120 x 100 pixels, above the limit of 10,000"):
        image_folder.read_image(tmp_path / "big.png", (16, 16))


@ONCE
def test_offline_imagenet_weights_say_so_and_exit_2(tmp_path, monkeypatch, capsys):
    from keras.src.utils import file_utils

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(file_utils, "urlretrieve", offline)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))  # nothing cached
    with pytest.raises(ConnectionError, match="Could not download VGG16's imagenet weights"):
        kt.transfer("vgg16", 2, input_shape=(32, 32, 3))
    root = _folder(tmp_path / "photos", {"a": "red", "b": "blue"})
    argv = ["fit", str(root), *FIT[:2], "--image-size", "32", "--out", str(tmp_path / "r")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "Could not download" in err and "--weights PATH" in err and "Traceback" not in err


@ONCE
def test_the_command_line_refuses_bad_rates_and_fails_a_nan_run(tmp_path, capsys):
    root = _folder(tmp_path / "photos", {"a": "red", "b": "blue"})
    for strategy in ("feature_extraction", "gradual", "fine_tune"):
        for value in ("nan", "inf", "0", "-1"):
            argv = ["fit", str(root), *FIT, "--strategy", strategy, "--lr", value]
            assert cli.main(argv) == 2
            assert "--lr must be a finite number above 0" in capsys.readouterr().err
    out = tmp_path / "run"
    argv = ["fit", str(root), *FIT, "--strategy", "feature_extraction", "--lr", "1e38"]
    assert cli.main([*argv, "--epochs", "3", "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "failed: fit_head stopped: the training loss became" in err
    assert not out.exists()  # nothing written


@ONCE
def test_ctrl_c_while_the_backend_loads_is_one_line_and_exit_130(monkeypatch, capsys):
    def interrupted(quiet):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_load_commands", interrupted)
    assert cli.main(["backbones"]) == cli.EXIT_INTERRUPTED == 130
    assert capsys.readouterr().err == "keras-transfer: interrupted\n"
