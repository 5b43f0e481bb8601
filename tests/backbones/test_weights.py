import functools
import os
import time

import keras
import numpy as np
import pytest

import keras_transfer as kt
from tests.conftest import (
    HYMENOPTERA,
    MOBILENET_V1_025,
    MOBILENET_V2_035_EXPORT,
    REAL_PHOTOS,
    as_numpy,
    pixels,
    tiny_backbone,
)


def _offset(model, delta=0.5):
    model.set_weights([w + delta for w in model.get_weights()])
    return model


def test_transfer_weights_by_name_reports_every_layer():
    source = _offset(tiny_backbone(top=True))
    target = tiny_backbone(top=False, name="target")
    report = kt.transfer_weights(source, target)
    assert [row[0] for row in report.transferred] == [
        "conv0",
        "bn0",
        "conv1",
        "bn1",
        "conv2",
        "bn2",
    ]
    assert report.transferred_params == target.count_params()
    assert report.skipped == [("predictions", "no target layer matched")]
    assert report.missing == []
    for a, b in zip(target.get_weights(), source.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert "Transferred 3,872 parameters in 6 layers" in report.summary()


def test_transfer_weights_by_order_and_mismatches():
    source = _offset(tiny_backbone(top=False, name="a"))
    renamed = keras.Sequential(
        [keras.Input((32, 32, 3))]
        + [
            keras.layers.Conv2D(8, 3, strides=2, padding="same", name="first"),
            keras.layers.Conv2D(99, 3, padding="same", name="odd"),
        ]
    )
    report = kt.transfer_weights(source, renamed, match="order")
    assert report.transferred == [("first", "conv0", 3 * 3 * 3 * 8 + 8)]
    assert report.missing[0][0] == "odd" and "4 source arrays" in report.missing[0][1]
    with pytest.raises(ValueError, match="Pass skip_mismatch=True"):
        kt.transfer_weights(source, renamed, match="order", skip_mismatch=False)
    with pytest.raises(ValueError, match="Received: match='fuzzy'"):
        kt.transfer_weights(source, renamed, match="fuzzy")


def test_npz_round_trip_is_atomic_and_readable_without_keras(tmp_path):
    source = _offset(tiny_backbone())
    path = tmp_path / "source.npz"
    written = kt.save_weights_npz(source, path)
    assert written == source.count_params()
    assert os.listdir(tmp_path) == ["source.npz"]  # no temporary file left
    with np.load(path) as data:
        assert "conv0/0/kernel" in data.files
    target = tiny_backbone(name="fresh")
    report = kt.load_weights_npz(target, path)
    assert report.transferred_params == written
    x = pixels()
    np.testing.assert_allclose(as_numpy(target(x)), as_numpy(source(x)), rtol=1e-6)
    partial = tmp_path / "head.npz"
    assert kt.save_weights_npz(source, partial, layers=["predictions"]) == 16 * 10 + 10
    with pytest.raises(ValueError, match=r"Received: \['nope'\]"):
        kt.save_weights_npz(source, partial, layers=["nope"])


def test_failed_write_leaves_nothing_behind(tmp_path):
    class Broken(keras.layers.Layer):
        def build(self, shape):
            self.w = self.add_weight(shape=(2,), name="w")

        def call(self, x):
            return x

    model = keras.Sequential([keras.Input((2,)), Broken(name="broken")])
    target = tmp_path / "out.npz"
    real = np.savez
    try:
        np.savez = lambda *a, **k: (_ for _ in ()).throw(OSError("disk full"))
        with pytest.raises(OSError, match="disk full"):
            kt.save_weights_npz(model, target)
    finally:
        np.savez = real
    assert os.listdir(tmp_path) == []


def test_missing_and_corrupt_files_are_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="Received: path="):
        kt.load_legacy_h5(tiny_backbone(), tmp_path / "absent.h5")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a valid .npz"):
        kt.load_weights_npz(tiny_backbone(), bad)
    bad.write_bytes(b"")
    with pytest.raises(ValueError, match="not a valid .npz.*EOFError"):
        kt.load_weights_npz(tiny_backbone(), bad)


def test_legacy_h5_into_another_architecture_is_an_error(tmp_path):
    import h5py

    # A Keras 2 style file whose layers match nothing in the target.
    with h5py.File(tmp_path / "k2.h5", "w") as handle:
        group = handle.create_group("other_layer")
        group.attrs["weight_names"] = [b"other_layer/kernel:0"]
        group.create_dataset("other_layer/kernel:0", data=np.ones((3, 3)))
        handle.attrs["layer_names"] = [b"other_layer"]
    target = tiny_backbone(name="target")
    before = [as_numpy(w).copy() for w in target.weights]
    with pytest.raises(ValueError, match="No weights of .*k2.h5' fit the model 'target'"):
        kt.load_legacy_h5(target, tmp_path / "k2.h5")
    for weight, value in zip(target.weights, before):
        np.testing.assert_array_equal(as_numpy(weight), value)


@pytest.mark.shared_data
def test_keras2_teachable_machine_export_imports_all_base_parameters():
    base = keras.applications.MobileNetV2(
        alpha=0.35, include_top=False, weights=None, input_shape=(224, 224, 3)
    )
    report = kt.load_legacy_h5(base, MOBILENET_V2_035_EXPORT)
    assert report.transferred_params == 410_208 == base.count_params()
    assert report.missing == []
    assert {layer for layer, _ in report.skipped} == {"dense_Dense1", "dense_Dense2"}
    assert "Transferred 410,208 parameters" in report.summary()
    # Legacy `depthwise_kernel` landed in Keras 3's `kernel`, with real values.
    assert float(np.abs(as_numpy(base.get_layer("expanded_conv_depthwise").kernel)).sum()) > 0


@pytest.fixture(scope="module")
def hymenoptera():
    def load(split):
        data = keras.utils.image_dataset_from_directory(
            HYMENOPTERA / split, image_size=(224, 224), batch_size=64, shuffle=False, verbose=False
        )
        xs, ys = zip(*[(np.asarray(x), np.asarray(y)) for x, y in data])
        return np.concatenate(xs), np.concatenate(ys)

    return load("train"), load("val")


@REAL_PHOTOS
@pytest.mark.shared_data
@pytest.mark.parametrize(
    "constructor, weights, bar",
    [
        (
            functools.partial(keras.applications.MobileNetV2, alpha=0.35),
            MOBILENET_V2_035_EXPORT,
            0.88,
        ),
        (functools.partial(keras.applications.MobileNet, alpha=0.25), MOBILENET_V1_025, 0.80),
    ],
    ids=["mobilenet_v2_0.35_keras2_export", "mobilenet_v1_0.25_official"],
)
def test_real_weights_reach_the_probe_accuracy(hymenoptera, constructor, weights, bar):
    from sklearn.linear_model import LogisticRegression

    (x_train, y_train), (x_val, y_val) = hymenoptera
    start = time.perf_counter()
    model = kt.transfer(constructor, weights=str(weights), input_shape=(224, 224, 3))
    f_train = model.predict(x_train, batch_size=64, verbose=0)
    f_val = model.predict(x_val, batch_size=64, verbose=0)
    accuracy = LogisticRegression(max_iter=2000).fit(f_train, y_train).score(f_val, y_val)
    print(f"{weights.name}: probe accuracy {accuracy:.3f} in {time.perf_counter() - start:.1f} s")
    assert accuracy >= bar
    assert time.perf_counter() - start < 60
