import json
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_transfer as kt
from tests.conftest import BACKEND, pixels, runs_once_in, subprocess_env, tiny_backbone

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


def test_in_memory_matches_predict_for_every_array_input():
    model = _feature_model()
    expected = model.predict(X, verbose=0)
    for data in (X, (X, Y)):
        feats = kt.extract_features(model, data, batch_size=4, progress=False)
        np.testing.assert_allclose(feats.x, expected, rtol=1e-5, atol=1e-6)
    assert feats.labels.tolist() == Y.tolist()


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


def test_several_layers_and_several_backbones_in_one_pass():
    feats = kt.extract_features(
        tiny_backbone(top=False), X, layers=["relu0", "last_conv"], progress=False
    )
    assert {k: v.shape for k, v in feats.features.items()} == {
        "relu0": (10, 8),
        "last_conv": (10, 16),
    }
    fused = kt.extract_features(
        [_feature_model("a"), _feature_model("b")], (X, Y), fusion="concat", progress=False
    )
    assert set(fused.features) == {"0_transfer_a", "1_transfer_b", "fused"}
    np.testing.assert_allclose(
        fused.x,
        np.concatenate([fused.features["0_transfer_a"], fused.features["1_transfer_b"]], -1),
    )


def test_store_is_reused_without_running_the_backbone(tmp_path):
    model = _feature_model()
    first = kt.extract_features(
        model, (X, Y), cache=tmp_path / "store", batch_size=4, shard_size=4, progress=False
    )
    manifest = json.loads((tmp_path / "store" / "manifest.json").read_text())
    assert manifest["complete"] and manifest["rows"] == 10 and len(manifest["shards"]) == 3
    assert all(len(e["sha256"]) == 64 for s in manifest["shards"] for e in s["files"].values())
    _Counting(model, forbid=True)
    again = kt.extract_features(
        model, (X, Y), cache=tmp_path / "store", batch_size=4, progress=False
    )
    np.testing.assert_array_equal(np.asarray(again.x), np.asarray(first.x))
    loaded = kt.Features.load(tmp_path / "store")
    assert isinstance(loaded.x, np.ndarray) and loaded.labels.tolist() == Y.tolist()


def test_npz_store_and_save_load(tmp_path):
    model = _feature_model()
    feats = kt.extract_features(model, (X, Y), cache=tmp_path / "f.npz", progress=False)
    _Counting(model, forbid=True)
    hit = kt.extract_features(model, (X, Y), cache=tmp_path / "f.npz", progress=False)
    np.testing.assert_array_equal(hit.x, feats.x)
    feats.save(tmp_path / "copy")
    np.testing.assert_array_equal(kt.Features.load(tmp_path / "copy").x, feats.x)


def test_mismatched_store_is_refused_unless_overwrite(tmp_path):
    kt.extract_features(_feature_model("a"), X, cache=tmp_path / "s", progress=False)
    with pytest.raises(ValueError, match="differ in: models.*overwrite=True"):
        kt.extract_features(_feature_model("b"), X, cache=tmp_path / "s", progress=False)
    model = _feature_model("c")
    kt.extract_features(model, X, cache=tmp_path / "t", progress=False)
    with pytest.raises(ValueError, match="differ in: data"):
        kt.extract_features(model, X[:5], cache=tmp_path / "t", progress=False)
    replaced = kt.extract_features(
        _feature_model("b"), X, cache=tmp_path / "s", progress=False, overwrite=True
    )
    assert replaced.x.shape == (10, 16)


def test_interrupted_extraction_resumes_from_the_last_complete_shard(tmp_path):
    model = _feature_model()
    store = tmp_path / "store"

    def failing():
        for i in range(0, 10, 2):
            if i == 6:
                raise RuntimeError("disk pulled")
            yield X[i : i + 2], Y[i : i + 2]

    with pytest.raises(RuntimeError, match="disk pulled"):
        kt.extract_features(model, failing(), cache=store, shard_size=2, progress=False)
    manifest = json.loads((store / "manifest.json").read_text())
    assert not manifest["complete"] and manifest["rows"] == 6
    with pytest.raises(ValueError, match="incomplete"):
        kt.Features.load(store)
    counter = _Counting(model)
    resumed = kt.extract_features(
        model,
        ((X[i : i + 2], Y[i : i + 2]) for i in range(0, 10, 2)),
        cache=store,
        shard_size=2,
        progress=False,
    )
    assert counter.calls == 4  # only the rows after the last complete shard
    np.testing.assert_allclose(np.asarray(resumed.x), counter.original(X), rtol=1e-5, atol=1e-6)
    assert resumed.labels.tolist() == Y.tolist()


def test_corrupt_shard_is_detected(tmp_path):
    kt.extract_features(
        _feature_model(), X, cache=tmp_path / "s", shard_size=4, batch_size=4, progress=False
    )
    shard = sorted(pathlib.Path(tmp_path / "s").glob("shard_00001_*.npy"))[0]
    shard.write_bytes(shard.read_bytes()[:-8])
    with pytest.raises(ValueError, match="fails its checksum"):
        kt.Features.load(tmp_path / "s")


def test_bad_input_is_reported(tmp_path):
    model = _feature_model()
    with pytest.raises(ValueError, match="Received: 10 images and 3 labels"):
        kt.extract_features(model, (X, Y[:3]), progress=False)
    with pytest.raises(ValueError, match=r"Received: images of shape \(16, 16, 3\)"):
        kt.extract_features(model, pixels(2, size=16), progress=False)
    with pytest.raises(ValueError, match=r"Received: images of shape \(32, 32, 4\)"):
        kt.extract_features(model, np.zeros((2, 32, 32, 4), "float32"), progress=False)
    with pytest.raises(ValueError, match="empty"):
        kt.extract_features(model, np.zeros((0, 32, 32, 3), "float32"), progress=False)
    with pytest.raises(ValueError, match="empty"):
        kt.extract_features(model, iter([]), progress=False)
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(PermissionError, match="not writable. Received: cache="):
        kt.extract_features(model, X, cache=blocker / "store", progress=False)
    nan = X.copy()
    nan[3, 0, 0, 0] = np.nan
    inputs = keras.Input((32, 32, 3))
    pooling = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(inputs))
    with pytest.raises(ValueError, match=r"1 NaN or Inf pixels; the first at index \(3, 0, 0, 0\)"):
        kt.extract_features(pooling, nan, progress=False)
    # Finite pixels, a backbone that makes them infinite.
    scaled = keras.layers.Rescaling(float("inf"))(inputs)
    broken = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(scaled))
    with pytest.raises(ValueError, match="NaN or Inf in the features"):
        kt.extract_features(broken, X, progress=False)


def test_sharded_parts_merge_into_one_store_and_faults_are_reported(tmp_path):
    model = _feature_model()
    expected = kt.extract_features(model, (X, Y), progress=False)
    store = tmp_path / "store"
    parts = [
        kt.extract_features(
            model, (X, Y), cache=store, shard=(i, 3), batch_size=2, shard_size=2, progress=False
        )
        for i in (2, 0, 1)
    ]
    assert [len(p) for p in parts] == [4, 3, 3]  # rows 6..10, 0..3, 3..6
    merged = kt.Features.load(store)  # the last part merged it
    assert merged.manifest["parts"] == 3 and (store / "manifest.json").is_file()
    np.testing.assert_allclose(merged.x, expected.x, rtol=1e-5, atol=1e-6)
    assert merged.labels.tolist() == Y.tolist()

    (store / "manifest.json").unlink()  # automatic merging on load
    np.testing.assert_allclose(kt.Features.load(store).x, expected.x, rtol=1e-5, atol=1e-6)
    other = tmp_path / "other"  # a part made by another model
    kt.extract_features(_feature_model("other"), (X, Y), cache=other, shard=(1, 3), progress=False)
    (store / "part-00001-of-00003").rename(tmp_path / "moved")
    (other / "part-00001-of-00003").rename(store / "part-00001-of-00003")
    with pytest.raises(ValueError, match="different settings"):
        kt.Features.merge(store)
    import shutil

    shutil.rmtree(store / "part-00001-of-00003")
    with pytest.raises(
        ValueError,
        match=r"missing parts: \['part-00001-of-00003'\]; "
        r"gap: rows 3\.\.6 are in no part",
    ):
        kt.Features.load(store)
    manifest = json.loads((tmp_path / "moved" / "manifest.json").read_text())
    manifest["part"]["start"] = 2  # as if the split had changed between runs
    (tmp_path / "moved" / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "moved").rename(store / "part-00001-of-00003")
    with pytest.raises(ValueError, match="overlap: part-00001-of-00003 starts at row 2"):
        kt.Features.merge(store)


def test_shard_argument_is_checked():
    model = _feature_model()
    for shard in ((2, 2), (1,), (-1, 2), (0.5, 2), "0/2"):
        with pytest.raises(ValueError, match=r"pair \(index, count\).*Received: shard="):
            kt.extract_features(model, X, cache="unused", shard=shard, progress=False)
    with pytest.raises(ValueError, match="pass cache=<directory>. Received: cache=None"):
        kt.extract_features(model, X, shard=(0, 2), progress=False)
    with pytest.raises(ValueError, match="data of known size.*Received: data of type generator"):
        kt.extract_features(model, (b for b in [X]), cache="unused", shard=(0, 2), progress=False)


PART = """
import sys, keras, keras_transfer as kt
model = keras.saving.load_model(sys.argv[1])
part = kt.extract_features(model, sys.argv[2], cache=sys.argv[3], batch_size=4,
                           shard=(int(sys.argv[4]), 2), progress=False)
print(len(part))
"""


@runs_once_in("torch")
def test_two_processes_extract_one_store_concurrently(tmp_path):
    from PIL import Image

    for label in ("ants", "bees"):
        (tmp_path / "photos" / label).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(pixels(1, seed=10 * len(label) + i)[0].astype("uint8")).save(
                tmp_path / "photos" / label / f"{i}.png"
            )
    model = _feature_model()
    model.save(tmp_path / "model.keras")
    args = [tmp_path / "model.keras", tmp_path / "photos", tmp_path / "store"]
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", PART, *map(str, args), str(i)],
            env=subprocess_env(BACKEND),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in (0, 1)
    ]
    outputs = [worker.communicate(timeout=120) for worker in workers]
    for worker, (_, err) in zip(workers, outputs):
        assert worker.returncode == 0, err[-2000:]
    assert [out.split()[-1] for out, _ in outputs] == ["5", "5"]
    merged = kt.Features.load(tmp_path / "store")
    expected = kt.extract_features(model, tmp_path / "photos", progress=False)
    np.testing.assert_allclose(merged.x, expected.x, rtol=1e-5, atol=1e-6)
    assert merged.labels.tolist() == [0] * 5 + [1] * 5
    assert merged.class_names == ["ants", "bees"] and merged.manifest["parts"] == 2


# --- A store answers only for the data it was made from (issue: data path) ----------

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


def _class_folder(root, classes):
    from PIL import Image

    for index, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(2):
            image = pixels(1, seed=10 * index + i)[0].astype("uint8")
            Image.fromarray(image).save(root / name / f"{name}{i}.png")


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


@store_logic
def test_save_replaces_a_store_atomically_and_never_appends(tmp_path):
    feats = kt.extract_features(_feature_model(), (X, Y), progress=False)
    for path in (tmp_path / "dir", tmp_path / "f.npz"):
        feats.save(path)
        feats.save(path)
        kt.Features.load(path).save(path)
        loaded = kt.Features.load(path)
        assert len(loaded) == 10 and loaded.labels.tolist() == Y.tolist()
        np.testing.assert_array_equal(np.asarray(loaded.x), feats.x)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "f.npz"]  # no leftovers


@store_logic
def test_nothing_the_library_did_not_write_is_deleted_or_mixed(tmp_path):
    model = _feature_model()
    orphan = tmp_path / "orphan"  # shards without a manifest: not ours to delete
    orphan.mkdir()
    (orphan / "shard_00000_0.npy").write_bytes(b"a user's file")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    for path in (orphan, mine):
        with pytest.raises(FileExistsError, match="not a feature store.*Nothing in it"):
            kt.extract_features(model, X, cache=path, overwrite=True, progress=False)
        with pytest.raises(FileExistsError, match="not a sharded feature store.*Nothing in it"):
            kt.extract_features(model, X, cache=path, shard=(0, 2), progress=False)
    feats = kt.extract_features(model, X, progress=False)
    for path in (mine, tmp_path / "photo.npz"):
        if path.suffix:
            path.write_bytes(b"not a store")
        with pytest.raises(FileExistsError, match="is not a feature store: not replaced"):
            feats.save(path)
    assert (orphan / "shard_00000_0.npy").read_bytes() == b"a user's file"
    assert (mine / "notes.txt").read_text() == "keep"
    assert (tmp_path / "photo.npz").read_bytes() == b"not a store"


@store_logic
def test_labels_must_be_integer_valued(tmp_path):
    model = _feature_model()
    feats = kt.extract_features(model, (X, Y.astype("float32")), progress=False)
    assert feats.labels.dtype == np.int64 and feats.labels.tolist() == Y.tolist()
    fractions = Y + 0.9
    with pytest.raises(
        ValueError, match=r"integer class indices.*Received: the label at index 0 is 0.9"
    ):
        kt.extract_features(model, (X, fractions), progress=False)
    with pytest.raises(ValueError, match="integer class indices.*dtype <U"):
        kt.extract_features(model, (X, np.array(["ant", "bee"] * 5)), progress=False)
    with pytest.raises(ValueError, match="not one-hot rows"):
        kt.extract_features(model, (X, np.eye(2)[Y]), progress=False)
    with pytest.raises(ValueError, match="0 or more. Received: labels from -1"):
        kt.extract_features(model, iter([(X, Y - 1)]), progress=False)


@store_logic
def test_damaged_store_files_name_the_file(tmp_path):
    (tmp_path / "empty.npz").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.npz' is not a feature store .npz"):
        kt.Features.load(tmp_path / "empty.npz")
    kt.extract_features(_feature_model(), X, cache=tmp_path / "s", progress=False)
    manifest = tmp_path / "s" / "manifest.json"
    text = manifest.read_text()
    for damaged in (text[: len(text) // 2], "[]", json.dumps({"key": {}})):
        manifest.write_text(damaged)
        with pytest.raises(ValueError, match=r"manifest '.*manifest.json' is damaged"):
            kt.Features.load(tmp_path / "s")
    for outside in ("/etc/passwd", "../secret.npy"):
        entry = json.loads(text)
        entry["shards"][0]["files"]["features"]["file"] = outside
        manifest.write_text(json.dumps(entry))
        with pytest.raises(ValueError, match="names a file outside the store; refused"):
            kt.Features.load(tmp_path / "s")


@store_logic
def test_an_unwritable_npz_cache_fails_before_the_extraction(tmp_path):
    model = _feature_model()
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    _Counting(model, forbid=True)
    with pytest.raises(PermissionError, match="not writable. Received: cache="):
        kt.extract_features(model, X, cache=blocker / "f.npz", progress=False)
