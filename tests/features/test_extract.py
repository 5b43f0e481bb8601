"""`extract_features`: features equal to `predict`, several taps and backbones in
one pass, and bad input."""

import keras
import numpy as np
import pytest

import keras_transfer as kt
from tests.conftest import pixels, tiny_backbone
from tests.features.feature_models import X, Y, _Counting, _feature_model, store_logic


def test_in_memory_matches_predict_for_every_array_input():
    model = _feature_model()
    expected = model.predict(X, verbose=0)
    for data in (X, (X, Y)):
        feats = kt.extract_features(model, data, batch_size=4, progress=False)
        np.testing.assert_allclose(feats.x, expected, rtol=1e-5, atol=1e-6)
    assert feats.labels.tolist() == Y.tolist()


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


@store_logic
def test_an_unwritable_npz_cache_fails_before_the_extraction(tmp_path):
    model = _feature_model()
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    _Counting(model, forbid=True)
    with pytest.raises(PermissionError, match="not writable. Received: cache="):
        kt.extract_features(model, X, cache=blocker / "f.npz", progress=False)


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


def test_shard_argument_is_checked():
    model = _feature_model()
    for shard in ((2, 2), (1,), (-1, 2), (0.5, 2), "0/2"):
        with pytest.raises(ValueError, match=r"pair \(index, count\).*Received: shard="):
            kt.extract_features(model, X, cache="unused", shard=shard, progress=False)
    with pytest.raises(ValueError, match="pass cache=<directory>. Received: cache=None"):
        kt.extract_features(model, X, shard=(0, 2), progress=False)
    with pytest.raises(ValueError, match="data of known size.*Received: data of type generator"):
        kt.extract_features(model, (b for b in [X]), cache="unused", shard=(0, 2), progress=False)
