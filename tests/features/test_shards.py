"""Sharded extraction: parts written by several processes, merged into one
store."""

import json
import subprocess
import sys

import numpy as np
import pytest

import keras_transfer as kt
from tests.conftest import BACKEND, pixels, runs_once_in, subprocess_env
from tests.features.feature_models import X, Y, _feature_model


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
