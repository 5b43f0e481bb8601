"""`backbones.families`: each table row's facts hold for the model it names:
its preprocessing, parameter count, blocks and taps."""

import contextlib
import importlib

import keras
import numpy as np
import pytest
from keras.src.backend.common import global_state

from keras_transfer.backbones import families, registry
from keras_transfer.backbones.cut import build_backbone
from keras_transfer.backbones.resolution import resolve
from keras_transfer.layers import ImagePreprocessing
from tests.conftest import BACKEND

ALL_CONSTRUCTORS = sorted(n for n in dir(keras.applications) if n[0].isupper())


def test_every_keras_applications_constructor_has_a_row():
    assert sorted(c for f in families.FAMILIES for c in f.models) == ALL_CONSTRUCTORS


@pytest.mark.parametrize("family", families.FAMILIES, ids=lambda f: f.name)
def test_embedded_preprocessing_equals_the_familys_preprocess_input(family):
    module = importlib.import_module(f"keras.applications.{family.module}")
    pixels = np.random.default_rng(0).uniform(0, 255, size=(2, 8, 8, 3)).astype("float32")
    expected = module.preprocess_input(pixels.copy())
    mode = "none" if family.preprocessing == "builtin" else family.preprocessing
    got = keras.ops.convert_to_numpy(ImagePreprocessing(mode)(pixels))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
    if family.preprocessing == "builtin":
        np.testing.assert_array_equal(expected, pixels)  # preprocess_input is a no-op


def _small_size(family):
    return max(family.min_size, 32)


def _weighted(layer):
    return bool(layer.weights)


@contextlib.contextmanager
def _structure_only():
    """Builds layers and variables without initialising the variables (Keras's
    deferred initialisation): these checks read structure, never values, and
    random initialisation is most of the cost of building 40 models."""
    try:
        with keras.StatelessScope(initialize_variables=False):
            yield
    finally:
        # Forget them, or the next StatelessScope to close initialises them all.
        global_state.set_global_attribute("uninitialized_variables", [])


# The registry is backend-independent data: each model is built once, in the
# JAX process, where an uninitialised build is fastest (the preprocessing
# numerics run on every backend).
@pytest.mark.skipif(
    BACKEND != "jax",
    reason="each keras.applications model is built once, "
    "in the JAX process, to keep the three-backend CI under 15 minutes",
)
@pytest.mark.parametrize("name", ALL_CONSTRUCTORS)
def test_every_constructor_resolves_taps_blocks_and_preprocesses_once(name):
    family = registry.family_of_constructor(name)
    size = _small_size(family)
    with _structure_only():
        source = resolve(name.lower(), (size, size, 3), weights=None)
        backbone = build_backbone(source)
        # Each block is a feature tap (the one before the top, here).
        tap = build_backbone(source, feature_layer=backbone.blocks[-2][0], name="tap")
    assert source.family is family
    # A built keras.applications model is recognised by its name, too.
    assert registry.family_of_model(source.model) is family
    # The registry's facts (the `keras-transfer backbones` table) are true.
    variant = family.models[name]
    assert (source.model.count_params(), len(backbone.blocks)) == (
        variant.parameters,
        variant.blocks,
    )
    # The feature taps exist: pooled rank-2 embeddings.
    assert len(backbone.output.shape) == 2 and len(tap.output.shape) == 2
    # Blocks cover every weighted layer exactly once, from stem to top.
    order = {layer.name: i for i, layer in enumerate(backbone.layers)}
    covered = [n for _, names in backbone.blocks for n in names]
    assert len(covered) == len(set(covered))
    weighted = {layer.name for layer in backbone.layers if _weighted(layer)}
    assert weighted <= set(covered), weighted - set(covered)
    firsts = [min(order[n] for n in names) for _, names in backbone.blocks]
    lasts = [max(order[n] for n in names) for _, names in backbone.blocks]
    assert firsts == sorted(firsts) and lasts == sorted(lasts)
    # Built-in preprocessing is never applied twice.
    if family.preprocessing == "builtin":
        assert source.preprocessing == "none"
        assert any(
            isinstance(l, (keras.layers.Rescaling, keras.layers.Normalization))
            for l in backbone.layers
        )
    else:
        assert source.preprocessing == family.preprocessing
