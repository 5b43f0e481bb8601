import keras
import numpy as np
import pytest

from keras_transfer.layers import FeatureFusion, TransferMatrix
from tests.layer_test_case import run_layer_test

RNG = np.random.default_rng(1)
A = RNG.normal(size=(6, 4)).astype("float32")
B = RNG.normal(size=(6, 4)).astype("float32")
C = RNG.normal(size=(6, 7)).astype("float32")


def _np(x):
    return keras.ops.convert_to_numpy(x)


@pytest.mark.parametrize(
    "mode, expected",
    [
        ("concat", np.concatenate([A, B], -1)),
        ("sum", A + B),
        ("mean", (A + B) / 2),
        ("weighted", (A + B) / 2),  # logits start at zero: equal weights
    ],
)
def test_modes_match_numpy(mode, expected):
    layer = FeatureFusion(mode)
    np.testing.assert_allclose(_np(layer([A, B])), expected, rtol=1e-6)
    assert layer.compute_output_shape([A.shape, B.shape]) == expected.shape


def test_concat_accepts_any_widths():
    assert tuple(FeatureFusion()([A, C]).shape) == (6, 11)


def test_weighted_uses_softmax_of_learnt_logits():
    layer = FeatureFusion("weighted")
    layer([A, B])
    layer.source_logits.assign(np.array([np.log(3.0), 0.0], "float32"))
    np.testing.assert_allclose(_np(layer([A, B])), 0.75 * A + 0.25 * B, rtol=1e-5)


def test_attention_weights_each_sample_with_a_shared_scorer():
    layer = FeatureFusion("attention")
    layer([A, B])
    kernel, bias = (_np(w) for w in layer.scorer.weights)
    scores = np.stack([A @ kernel + bias, B @ kernel + bias], axis=1)  # (6, 2, 1)
    weights = np.exp(scores) / np.exp(scores).sum(1, keepdims=True)
    expected = (np.stack([A, B], 1) * weights).sum(1)
    np.testing.assert_allclose(_np(layer([A, B])), expected, rtol=1e-5, atol=1e-6)


def test_units_projects_each_source_with_its_own_transfer_matrix():
    layer = FeatureFusion("sum", units=5)
    out = _np(layer([A, C]))
    assert out.shape == (6, 5)
    assert all(isinstance(p, TransferMatrix) for p in layer.projections)
    pa, pc = (_np(p.kernel) for p in layer.projections)
    np.testing.assert_allclose(out, A @ pa + C @ pc, rtol=1e-5, atol=1e-5)
    assert layer.compute_output_shape([(None, 4), (None, 7)]) == (None, 5)


def test_weighted_fusion_learns_to_prefer_the_informative_source():
    x_good = RNG.normal(size=(256, 4)).astype("float32")
    x_noise = RNG.normal(size=(256, 4)).astype("float32")
    inputs = [keras.Input((4,)), keras.Input((4,))]
    fusion = FeatureFusion("weighted")
    model = keras.Model(inputs, fusion(inputs))
    model.compile(keras.optimizers.Adam(0.05), "mse")
    model.fit([x_good, x_noise], x_good, epochs=20, verbose=0)
    logits = _np(fusion.source_logits)
    assert logits[0] > logits[1] + 1.0


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("mode", ["weighted", "attention"])
def test_mixed_precision(policy, mode):
    keras.config.set_dtype_policy(policy)
    y = FeatureFusion(mode, units=3)([A, C])
    assert keras.backend.standardize_dtype(y.dtype) == policy.split("_")[1]


def test_config_round_trip():
    layer = FeatureFusion("attention", units=8, name="fuse")
    clone = FeatureFusion.from_config(layer.get_config())
    assert (clone.mode, clone.units, clone.name) == ("attention", 8, "fuse")


def test_bad_input_says_what_was_received():
    with pytest.raises(ValueError, match="Received: mode='max'"):
        FeatureFusion("max")
    with pytest.raises(ValueError, match="Received: units=0"):
        FeatureFusion("sum", units=0)
    with pytest.raises(ValueError, match=r"Received: widths \[4, 7\]"):
        FeatureFusion("sum")([A, C])
    with pytest.raises(TypeError, match=r"a single input of shape \(6, 4\)"):
        FeatureFusion("concat")(A)


@pytest.mark.parametrize(
    "mode, width", [("concat", 10), ("sum", 5), ("mean", 5), ("weighted", 5), ("attention", 5)]
)
def test_layer_harness(mode, width, tmp_path):
    rng = np.random.default_rng(0)
    run_layer_test(
        FeatureFusion,
        {"mode": mode, "units": None if mode == "concat" else 5},
        [rng.normal(size=(2, 6)).astype("float32"), rng.normal(size=(2, 4)).astype("float32")],
        (2, width),
        tmp_path=tmp_path,
        atol=1e-5,
    )
