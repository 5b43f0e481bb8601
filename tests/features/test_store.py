"""The feature store: reuse, refusal of another key, resumption, damage,
and atomic replacement of only what the library wrote."""

import json
import pathlib

import numpy as np
import pytest

import keras_transfer as kt
from tests.features.feature_models import X, Y, _Counting, _feature_model, store_logic


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
