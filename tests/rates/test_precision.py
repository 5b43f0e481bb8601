import keras
import numpy as np
import pytest

import keras_transfer as kt
from tests.conftest import BACKEND, as_numpy, pixels, tiny_backbone

X = pixels(8)
Y = np.arange(8) % 2


def _compute_dtypes(model, leaves=False):
    skip = (keras.layers.InputLayer, keras.Model) if leaves else keras.layers.InputLayer
    return {
        layer.name: layer.compute_dtype
        for layer in model._flatten_layers(include_self=False, recursive=True)
        if not isinstance(layer, skip)
    }


def test_auto_is_float32_on_cpu_and_leaves_a_chosen_global_policy():
    assert kt.precision.accelerator() == ("cpu", None)
    assert kt.precision.resolve("auto") == "float32"
    model = kt.transfer(tiny_backbone(top=False), 2)
    assert set(_compute_dtypes(model).values()) == {"float32"}
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    assert kt.precision.resolve("auto") == "mixed_bfloat16"  # the program chose it
    assert kt.precision.resolve(None) == "mixed_bfloat16"


@pytest.mark.parametrize(
    "policy, half", [("mixed_bfloat16", "bfloat16"), ("mixed_float16", "float16")]
)
def test_mixed_policy_computes_in_half_with_float32_logits_and_loss(policy, half):
    model = kt.transfer(tiny_backbone(top=False), 2, strategy="fine_tune", mixed_precision=policy)
    assert keras.mixed_precision.global_policy().name == "float32"  # restored
    dtypes = _compute_dtypes(model)
    assert dtypes["conv0"] == dtypes["bn2"] == half  # the user's built layers took it
    assert dtypes["preprocessing"] == dtypes["classifier"] == "float32"
    assert {v.dtype for v in model.weights} == {"float32"}
    assert model.output.dtype == "float32"
    model.compile(
        keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    # compile wraps float16 in loss scaling; bfloat16 has float32's range.
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer) == (half == "float16")
    before = as_numpy(model.get_layer("backbone").get_layer("conv0").kernel)
    # Dynamic loss scaling skips the first steps while it finds its scale.
    losses = model.fit(X, Y, batch_size=2, epochs=3, verbose=0).history["loss"]
    assert np.all(np.isfinite(losses))
    assert not np.allclose(before, as_numpy(model.get_layer("backbone").get_layer("conv0").kernel))
    logits = model.predict(X, verbose=0)
    assert logits.dtype == np.float32 and np.all(np.isfinite(logits))


@pytest.mark.skipif(
    BACKEND == "jax",
    reason="XLA compiles MobileNet's predict twice on "
    "JAX (17 s); the policy is backend-independent, and TF and torch run it",
)
def test_constructor_backbone_is_built_under_the_policy_and_saved_with_it(tmp_path):
    model = kt.transfer(
        keras.applications.MobileNet,
        3,
        weights=None,
        input_shape=(32, 32, 3),
        backbone_kwargs={"alpha": 0.25},
        mixed_precision="mixed_bfloat16",
    )
    assert _compute_dtypes(model)["conv1"] == "bfloat16"
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    # Every layer keeps its policy (Keras saves none for a model container).
    assert _compute_dtypes(loaded, leaves=True) == _compute_dtypes(model, leaves=True)
    np.testing.assert_allclose(
        loaded.predict(X, verbose=0), model.predict(X, verbose=0), rtol=1e-5, atol=1e-5
    )


def test_features_in_bfloat16_are_close_to_float32_and_stored_apart(tmp_path):
    backbone = tiny_backbone(top=False)
    full = kt.extract_features(backbone, X, progress=False, mixed_precision="float32")
    half = kt.extract_features(backbone, X, progress=False, mixed_precision="mixed_bfloat16")
    assert half.x.dtype == np.float32
    np.testing.assert_allclose(half.x, full.x, rtol=0.05, atol=0.05 * np.abs(full.x).max())
    assert half.manifest["key"]["id"] != full.manifest["key"]["id"]


def test_bad_policy_is_refused():
    with pytest.raises(ValueError, match=r"Received: mixed_precision='bf16'"):
        kt.transfer(tiny_backbone(top=False), 2, mixed_precision="bf16")
