"""`.keras` round trips for the layers, in-process, fresh-process and cross-backend."""

import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_transfer.layers import FeatureFusion, InfNormalize, TransferMatrix
from tests.conftest import BACKEND, subprocess_env

OTHER_BACKEND = {"tensorflow": "jax", "jax": "torch", "torch": "tensorflow"}[BACKEND]


def _fusion_model(mode):
    a, b = keras.Input((6,), name="a"), keras.Input((4,), name="b")
    fused = FeatureFusion(mode, units=5)([a, b])
    mapped = TransferMatrix(
        3,
        use_gate=True,
        use_bias=True,
        activation="relu",
        trainable_coefficient=True,
        kernel_regularizer="l2",
    )(fused)
    return keras.Model([a, b], InfNormalize()(mapped))


def _inputs():
    rng = np.random.default_rng(0)
    return [rng.normal(size=(8, 6)).astype("float32"), rng.normal(size=(8, 4)).astype("float32")]


@pytest.mark.parametrize("mode", ["concat", "sum", "mean", "weighted", "attention"])
def test_model_with_every_layer_round_trips(tmp_path, mode):
    model = _fusion_model(mode)
    # Move weights off their initial values so a reload that re-initialises fails.
    model.set_weights([w + 0.1 for w in model.get_weights()])
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(
        loaded.predict(_inputs(), verbose=0), model.predict(_inputs(), verbose=0)
    )


def test_closed_form_layer_round_trips(tmp_path):
    source = np.random.default_rng(2).normal(size=(40, 4))
    target = source @ np.random.default_rng(3).normal(size=(4, 4)) + 1.0
    layer = TransferMatrix.from_features(source, target, method="coral")
    model = keras.Sequential([keras.Input((4,)), layer])
    model.save(tmp_path / "coral.keras")
    loaded = keras.saving.load_model(tmp_path / "coral.keras")
    x = source[:5].astype("float32")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


LOAD_SCRIPT = """
import sys, numpy as np, keras
import keras_transfer  # registers the layers; no custom_objects needed
model = keras.saving.load_model(sys.argv[1])
data = np.load(sys.argv[2])
out = model.predict([data["a"], data["b"]], verbose=0)
np.testing.assert_allclose(out, data["expected"], rtol=1e-5, atol=1e-5)  # two backends, float32
print("loaded under", keras.backend.backend())
"""


def test_saved_model_loads_in_a_fresh_process_under_another_backend(tmp_path):
    model = _fusion_model("attention")
    model.set_weights([w + 0.1 for w in model.get_weights()])
    model.save(tmp_path / "model.keras")
    a, b = _inputs()
    np.savez(tmp_path / "io.npz", a=a, b=b, expected=model.predict([a, b], verbose=0))
    # The same-backend round trip is covered in-process above.
    for backend in [OTHER_BACKEND]:
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                LOAD_SCRIPT,
                str(tmp_path / "model.keras"),
                str(tmp_path / "io.npz"),
            ],
            env=subprocess_env(backend),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert f"loaded under {backend}" in result.stdout
