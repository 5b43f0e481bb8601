"""`Features`: the container of extracted features, saved and loaded as a
store directory or an `.npz`."""

import numpy as np

import keras_transfer as kt
from tests.features.feature_models import X, Y, _Counting, _feature_model


def test_npz_store_and_save_load(tmp_path):
    model = _feature_model()
    feats = kt.extract_features(model, (X, Y), cache=tmp_path / "f.npz", progress=False)
    _Counting(model, forbid=True)
    hit = kt.extract_features(model, (X, Y), cache=tmp_path / "f.npz", progress=False)
    np.testing.assert_array_equal(hit.x, feats.x)
    feats.save(tmp_path / "copy")
    np.testing.assert_array_equal(kt.Features.load(tmp_path / "copy").x, feats.x)


# --- A store answers only for the data it was made from (issue: data path) ----------
