"""`recipes.feature_extraction`: the frozen backbone once, a head on its
features, the two put back together."""

import warnings

import numpy as np
import pytest

import keras_transfer as kt
from keras_transfer.recipes.feature_extraction import train_on_features
from tests.conftest import pixels, tiny_backbone


def test_train_on_features_extracts_once_and_attaches_the_head():
    features = kt.transfer(tiny_backbone(top=False), preprocessing="unit")
    x, y = pixels(8), np.arange(8) % 2
    history = train_on_features(features, (x, y), (x, y), num_classes=2, epochs=2, progress=False)
    attached = history.model
    assert attached.output.shape[-1] == 2 and attached.input is features.input
    assert history.phases == [{"name": "head", "first_epoch": 0, "epochs": 2}]
    assert len(history.history["val_accuracy"]) == 2


def test_the_old_path_still_imports_with_a_warning():
    with pytest.warns(DeprecationWarning, match="moved to `keras_transfer.recipes"):
        old = kt.heads.train_on_features
    assert old is train_on_features
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert kt.strategies.get("feature_extraction").load_recipe() is train_on_features
