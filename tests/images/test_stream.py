"""`ktr.ImageStream`: a folder as uint8 batches, decoded as they are needed,
with `ImageFolder`'s labels and pixels, a seeded order, bad files skipped,
and shards that split the files."""

import json

import keras
import numpy as np
import pytest

import keras_transfer as ktr
from keras_transfer.images.folder import ImageFolder
from keras_transfer.recipes import training_data
from keras_transfer.utils import guards
from tests.command_line import COLORS, _folder
from tests.conftest import runs_once_in, tiny_backbone


@pytest.fixture
def folder(tmp_path):
    return _folder(tmp_path / "photos", per_class=5)


def _all(stream):
    batches = [stream[i] for i in range(len(stream))]
    return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


@runs_once_in("torch")  # NumPy and PIL: no backend op
def test_the_stream_has_the_folders_labels_and_pixels(folder):
    loaded = ImageFolder.load(folder, (16, 16))
    stream = ktr.ImageStream(folder, (16, 16), batch_size=4)
    images, labels = _all(stream)
    assert stream.class_names == loaded.class_names == list(COLORS)
    assert stream.paths == loaded.paths and len(stream) == 4  # 15 images, batches of 4
    np.testing.assert_array_equal(labels, loaded.labels)
    np.testing.assert_array_equal(images, loaded.images)
    assert images.dtype == np.uint8 and stream.cached


@runs_once_in("torch")
def test_the_same_seed_gives_the_same_order_and_each_epoch_another(folder):
    def first_epochs(seed):
        stream = ktr.ImageStream(folder, (8, 8), batch_size=5, shuffle=True, seed=seed)
        orders = []
        for _ in range(2):
            orders.append(_all(stream)[1].tolist() + [stream[0][0].sum()])
            stream.on_epoch_end()
        return orders

    again = first_epochs(3)
    assert first_epochs(3) == again
    assert again[0] != again[1]  # reshuffled
    assert first_epochs(4) != again


def _parts(folder, count, **kwargs):
    return [ktr.ImageStream(folder, (8, 8), shard=(i, count), **kwargs) for i in range(count)]


def _check_parts(folder, parts):
    """Disjoint, equal in length, covering the folder: each part repeats its
    own first file to reach the others' length."""
    whole = ktr.ImageStream(folder, (8, 8), shard=None)
    sets = [set(part.paths) for part in parts]
    assert all(not a & b for i, a in enumerate(sets) for b in sets[i + 1 :])
    assert set().union(*sets) == set(whole.paths)
    assert len({len(part.paths) for part in parts}) == 1
    for part in parts:
        assert set(part.paths[len(set(part.paths)) :]) <= {part.paths[0]}


@runs_once_in("torch")
def test_shards_are_disjoint_equal_and_cover_the_folder_and_keep_their_batch_size(folder):
    parts = _parts(folder, 2, batch_size=4)  # 15 files: 8 and 7 + 1
    _check_parts(folder, parts)
    assert [part.shard for part in parts] == [(0, 2), (1, 2)]
    parts[1].paths[parts[1].rows[1]].write_bytes(b"broken")
    with pytest.warns(UserWarning, match="Skipped a file"):
        images, labels = parts[1][0]
    assert len(images) == len(labels) == 4  # the batch's other images fill its place
    assert [len(parts[1][i][0]) for i in range(len(parts[1]))] == [4, 4]  # the last too
    assert ktr.ImageStream(folder, (8, 8)).shard is None  # one process: every file


@runs_once_in("jax")
def test_auto_shard_takes_the_jax_process_part(folder, monkeypatch):
    import jax

    parts = []
    monkeypatch.setattr(jax, "process_count", lambda: 3)
    for index in range(3):
        monkeypatch.setattr(jax, "process_index", lambda index=index: index)
        parts.append(ktr.ImageStream(folder, (8, 8)))
    assert [part.shard for part in parts] == [(0, 3), (1, 3), (2, 3)]
    _check_parts(folder, parts)


@runs_once_in("tensorflow")
def test_auto_shard_takes_the_tf_config_task_part(folder, monkeypatch):
    cluster = {"chief": ["h0:1"], "worker": ["h1:1", "h2:1"], "evaluator": ["h3:1"]}
    parts = []
    for task in ({"type": "chief", "index": 0}, *({"type": "worker", "index": i} for i in (0, 1))):
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": task}))
        parts.append(ktr.ImageStream(folder, (8, 8)))
    assert [part.shard for part in parts] == [(0, 3), (1, 3), (2, 3)]
    _check_parts(folder, parts)
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "evaluator"}}))
    assert ktr.ImageStream(folder, (8, 8)).shard is None


@runs_once_in("torch")
def test_the_cache_keeps_decoded_images_and_streams_when_they_do_not_fit(folder, monkeypatch):
    stream = ktr.ImageStream(folder, (8, 8), batch_size=16)
    first = stream[0][0].copy()
    for path in stream.paths:
        path.unlink()  # the second epoch reads memory, not the files
    np.testing.assert_array_equal(stream[0][0], first)
    monkeypatch.setattr(guards, "memory_budget", lambda: 100)
    _folder(folder.parent / "more", per_class=2)
    assert not ktr.ImageStream(folder.parent / "more", (8, 8)).cached
    with pytest.raises(ValueError, match=r"cache='memory'.*take 1,152 bytes, past the 100"):
        ktr.ImageStream(folder.parent / "more", (8, 8), cache="memory")


def test_a_stream_fine_tunes_predicts_and_skips_a_file_broken_after_the_scan(folder):
    stream = ktr.ImageStream(folder, (32, 32), batch_size=4, shuffle=True, seed=0, cache=None)
    model = ktr.transfer(tiny_backbone(top=False), 3, weights=None, input_shape=(32, 32, 3))
    stream.paths[3].write_bytes(b"not a photo any more")
    with pytest.warns(UserWarning, match="Skipped a file that could not be decoded"):
        # The fixed recipe: a head-only epoch, then one of everything, in model.fit.
        history = ktr.fine_tune(model, stream, epochs=1, freeze_epochs=1, verbose=0)
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["loss"]).all()
    assert len(stream.skipped) == 1 and str(stream.paths[3]) in stream.skipped[0]
    predicted = model.predict(ktr.ImageStream(folder, (32, 32), cache=None), verbose=0)
    assert predicted.shape == (14, 3)  # 15 files, one broken


def test_the_default_recipe_streams_holds_out_by_file_and_repeats_with_its_seed(
    folder, monkeypatch
):
    def read_into_memory(train):
        raise AssertionError("the adaptive recipe read a stream into arrays")

    monkeypatch.setattr(training_data, "_arrays", read_into_memory)
    ktr.ImageStream(folder, (32, 32)).paths[4].write_bytes(b"not a photo any more")

    def run():
        stream = ktr.ImageStream(folder, (32, 32), batch_size=4, shuffle=True, seed=0, cache=None)
        keras.utils.set_random_seed(0)
        model = ktr.transfer(tiny_backbone(top=False), 3, weights=None, input_shape=(32, 32, 3))
        with pytest.warns(UserWarning, match="Skipped a file that could not be decoded"):
            history = ktr.fine_tune(model, stream, seed=0, verbose=0)
        return history.decision, model.get_weights()

    decision, weights = run()
    assert decision["held_out_by"] == "file" and decision["augmentation"]
    assert decision["fine_tune_epochs"] >= 1  # the augmented stream fed fine-tuning
    # 15 files, one of each class held out; the broken one is in neither part.
    assert decision["holdout_images"] + decision["train_images"] == 14
    again, same = run()
    assert again == {**decision, "seconds": again["seconds"]}
    for first, second in zip(weights, same):
        np.testing.assert_array_equal(first, second)


@runs_once_in("torch")
def test_bad_arguments_say_what_was_received(folder, tmp_path):
    with pytest.raises(ValueError, match="Received: cache='disk'"):
        ktr.ImageStream(folder, (8, 8), cache="disk")
    with pytest.raises(ValueError, match=r"Received: shard=\(2, 2\)"):
        ktr.ImageStream(folder, (8, 8), shard=(2, 2))
    with pytest.raises(ValueError, match=r"fewer files than the 16 parts.*15 files"):
        ktr.ImageStream(folder, (8, 8), shard=(0, 16))
    model = ktr.transfer(tiny_backbone(top=False), 3, weights=None, input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match=r"strategy='fine_tune'.*shard=\(0, 2\)"):
        ktr.fine_tune(model, ktr.ImageStream(folder, (32, 32), shard=(0, 2)))
    with pytest.raises(ValueError, match="Received: workers=0"):
        ktr.ImageStream(folder, (8, 8), workers=0)
    with pytest.raises(FileNotFoundError, match="Received: data="):
        ktr.ImageStream(tmp_path / "nothing", (8, 8))
    bad = tmp_path / "bad" / "a"
    bad.mkdir(parents=True)
    (bad / "x.png").write_bytes(b"junk")
    (tmp_path / "bad" / "b").mkdir()
    (tmp_path / "bad" / "b" / "y.png").write_bytes(b"junk")
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="No file of `data` decodes"):
        ktr.ImageStream(tmp_path / "bad", (8, 8))[0]
