"""`.keras` files saved before the modules moved (0.1.0.dev0, commit
8b843fa) load after it: every class the library registers, computing what
it computed then. `tests/fixtures/make_saved_models.py`, run on that
checkout, made the files."""

import keras
import numpy as np

from keras_transfer.backbones.backbone_model import BackboneModel
from keras_transfer.backbones.penalties import HalfL2, StartingPoint
from keras_transfer.layers import (
    FeatureFusion,
    ImagePreprocessing,
    InfNormalize,
    TokenPooling,
    TransferMatrix,
)
from keras_transfer.rates.optimizers import BlockwiseLR
from keras_transfer.recipes.schedules import ExponentialRange, OneCycle
from tests.conftest import ROOT

FIXTURES = ROOT / "tests" / "fixtures"


def _load(name):
    saved = np.load(FIXTURES / f"{name}.npz")
    inputs = [saved[k] for k in sorted(saved.files) if k.startswith("input_")]
    outputs = [saved[k] for k in sorted(saved.files) if k.startswith("output_")]
    return keras.saving.load_model(FIXTURES / f"{name}.keras"), inputs, outputs


def test_a_model_of_every_registered_class_loads_and_computes_as_before():
    model, inputs, outputs = _load("every_class")
    for got, expected in zip(model.predict(inputs, verbose=0), outputs):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    layers = {type(layer) for layer in model._flatten_layers()}
    for cls in (BackboneModel, ImagePreprocessing, FeatureFusion, TransferMatrix, InfNormalize):
        assert cls in layers, cls.__name__
    assert TokenPooling in layers
    penalties = {type(v.regularizer) for v in model.trainable_variables if v.regularizer}
    assert penalties == {StartingPoint, HalfL2}  # L2-SP: toward the start, and on the head
    assert isinstance(model.optimizer, BlockwiseLR)
    assert isinstance(model.optimizer.inner_optimizer._learning_rate, OneCycle)


def test_the_range_tests_schedule_loads_from_its_new_module():
    model, inputs, outputs = _load("range_test")
    np.testing.assert_allclose(model.predict(inputs[0], verbose=0), outputs[0], rtol=1e-6)
    assert isinstance(model.optimizer._learning_rate, ExponentialRange)
