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
            return X[4 * i:4 * i + 4], Y[4 * i:4 * i + 4]

    sources = {
        "tf.data": tf.data.Dataset.from_tensor_slices((X, Y)).batch(4),
        "PyDataset": Batches(),
        "generator": ((X[i:i + 3], Y[i:i + 3]) for i in range(0, 10, 3)),
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
            Image.fromarray(pixels(1, seed=i)[0].astype("uint8")).save(tmp_path / label / f"{i}.jpg")
    (tmp_path / "bees" / "notes.txt").write_text("not an image")
    with pytest.warns(UserWarning, match=r"Skipped 1 file.*notes.txt"):
        feats = kt.extract_features(_feature_model(), tmp_path, batch_size=4, progress=False)
    assert feats.x.shape == (6, 16)
    assert feats.class_names == ["ants", "bees"] and feats.labels.tolist() == [0, 0, 0, 1, 1, 1]


def test_several_layers_and_several_backbones_in_one_pass():
    feats = kt.extract_features(tiny_backbone(top=False), X, layers=["relu0", "last_conv"],
                                progress=False)
    assert {k: v.shape for k, v in feats.features.items()} == {
        "relu0": (10, 8), "last_conv": (10, 16)}
    fused = kt.extract_features([_feature_model("a"), _feature_model("b")], (X, Y),
                                fusion="concat", progress=False)
    assert set(fused.features) == {"0_transfer_a", "1_transfer_b", "fused"}
    np.testing.assert_allclose(fused.x, np.concatenate([fused.features["0_transfer_a"],
                                                        fused.features["1_transfer_b"]], -1))


def test_store_is_reused_without_running_the_backbone(tmp_path):
    model = _feature_model()
    first = kt.extract_features(model, (X, Y), cache=tmp_path / "store", batch_size=4,
                                shard_size=4, progress=False)
    manifest = json.loads((tmp_path / "store" / "manifest.json").read_text())
    assert manifest["complete"] and manifest["rows"] == 10 and len(manifest["shards"]) == 3
    assert all(len(e["sha256"]) == 64 for s in manifest["shards"] for e in s["files"].values())
    _Counting(model, forbid=True)
    again = kt.extract_features(model, (X, Y), cache=tmp_path / "store", batch_size=4,
                                progress=False)
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
    replaced = kt.extract_features(_feature_model("b"), X, cache=tmp_path / "s",
                                   progress=False, overwrite=True)
    assert replaced.x.shape == (10, 16)


def test_interrupted_extraction_resumes_from_the_last_complete_shard(tmp_path):
    model = _feature_model()
    store = tmp_path / "store"

    def failing():
        for i in range(0, 10, 2):
            if i == 6:
                raise RuntimeError("disk pulled")
            yield X[i:i + 2], Y[i:i + 2]

    with pytest.raises(RuntimeError, match="disk pulled"):
        kt.extract_features(model, failing(), cache=store, shard_size=2, progress=False)
    manifest = json.loads((store / "manifest.json").read_text())
    assert not manifest["complete"] and manifest["rows"] == 6
    with pytest.raises(ValueError, match="incomplete"):
        kt.Features.load(store)
    counter = _Counting(model)
    resumed = kt.extract_features(
        model, ((X[i:i + 2], Y[i:i + 2]) for i in range(0, 10, 2)), cache=store,
        shard_size=2, progress=False)
    assert counter.calls == 4  # only the rows after the last complete shard
    np.testing.assert_allclose(np.asarray(resumed.x), counter.original(X), rtol=1e-5, atol=1e-6)
    assert resumed.labels.tolist() == Y.tolist()


def test_corrupt_shard_is_detected(tmp_path):
    kt.extract_features(_feature_model(), X, cache=tmp_path / "s", shard_size=4, batch_size=4,
                        progress=False)
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
    with pytest.raises(ValueError, match="NaN or Inf in the features"):
        kt.extract_features(pooling, nan, progress=False)


def test_sharded_parts_merge_into_one_store_and_faults_are_reported(tmp_path):
    model = _feature_model()
    expected = kt.extract_features(model, (X, Y), progress=False)
    store = tmp_path / "store"
    parts = [kt.extract_features(model, (X, Y), cache=store, shard=(i, 3), batch_size=2,
                                 shard_size=2, progress=False) for i in (2, 0, 1)]
    assert [len(p) for p in parts] == [4, 3, 3]  # rows 6..10, 0..3, 3..6
    merged = kt.Features.load(store)  # the last part merged it
    assert merged.manifest["parts"] == 3 and (store / "manifest.json").is_file()
    np.testing.assert_allclose(merged.x, expected.x, rtol=1e-5, atol=1e-6)
    assert merged.labels.tolist() == Y.tolist()

    (store / "manifest.json").unlink()  # automatic merging on load
    np.testing.assert_allclose(kt.Features.load(store).x, expected.x, rtol=1e-5, atol=1e-6)
    other = tmp_path / "other"  # a part made by another model
    kt.extract_features(_feature_model("other"), (X, Y), cache=other, shard=(1, 3),
                        progress=False)
    (store / "part-00001-of-00003").rename(tmp_path / "moved")
    (other / "part-00001-of-00003").rename(store / "part-00001-of-00003")
    with pytest.raises(ValueError, match="different settings"):
        kt.Features.merge(store)
    import shutil

    shutil.rmtree(store / "part-00001-of-00003")
    with pytest.raises(ValueError, match=r"missing parts: \['part-00001-of-00003'\]; "
                                         r"gap: rows 3\.\.6 are in no part"):
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
        kt.extract_features(model, (b for b in [X]), cache="unused", shard=(0, 2),
                            progress=False)


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
                tmp_path / "photos" / label / f"{i}.png")
    model = _feature_model()
    model.save(tmp_path / "model.keras")
    args = [tmp_path / "model.keras", tmp_path / "photos", tmp_path / "store"]
    workers = [subprocess.Popen([sys.executable, "-c", PART, *map(str, args), str(i)],
                                env=subprocess_env(BACKEND), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for i in (0, 1)]
    outputs = [worker.communicate(timeout=120) for worker in workers]
    for worker, (out, err) in zip(workers, outputs):
        assert worker.returncode == 0, err[-2000:]
    assert [out.split()[-1] for out, _ in outputs] == ["5", "5"]
    merged = kt.Features.load(tmp_path / "store")
    expected = kt.extract_features(model, tmp_path / "photos", progress=False)
    np.testing.assert_allclose(merged.x, expected.x, rtol=1e-5, atol=1e-6)
    assert merged.labels.tolist() == [0] * 5 + [1] * 5
    assert merged.class_names == ["ants", "bees"] and merged.manifest["parts"] == 2
