import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from keras_transfer.layers import InfNormalize
from tests.conftest import gradient
from tests.layer_test_case import run_layer_test

finite = st.floats(-1e6, 1e6, allow_nan=False, width=32)
arrays = hnp.arrays(
    "float32", hnp.array_shapes(min_dims=2, max_dims=2, max_side=6), elements=finite
)
# Fixed shape for gradient properties: JAX recompiles for every new shape.
fixed_arrays = hnp.arrays(
    "float32",
    (3, 5),
    elements=st.one_of(st.just(0.0), finite, st.floats(-1e-30, 1e-30).map(np.float32)),
)
FAST = settings(max_examples=30, deadline=None)


def test_divides_by_largest_absolute_entry():
    x = np.array([[1.0, -4.0, 2.0], [3.0, 0.5, -1.5]], "float32")
    y = keras.ops.convert_to_numpy(InfNormalize()(x))
    np.testing.assert_allclose(y, [[0.25, -1.0, 0.5], [1.0, 1 / 6, -0.5]], rtol=1e-6)


def test_zero_vector_stays_zero_with_finite_gradient():
    x = np.zeros((2, 5), "float32")
    layer = InfNormalize()
    y = keras.ops.convert_to_numpy(layer(x))
    assert np.array_equal(y, np.zeros_like(x))
    grad = gradient(layer, x)
    assert np.all(np.isfinite(grad))


def test_axis_list_normalises_over_several_axes():
    x = np.random.default_rng(0).normal(size=(2, 3, 4)).astype("float32")
    y = keras.ops.convert_to_numpy(InfNormalize(axis=[1, 2])(x))
    np.testing.assert_allclose(np.abs(y).max(axis=(1, 2)), [1.0, 1.0], rtol=1e-6)


@FAST
@given(fixed_arrays)
def test_values_and_gradients_never_nan_or_inf(x):
    layer = InfNormalize()
    y = keras.ops.convert_to_numpy(layer(x))
    assert np.all(np.isfinite(y))
    assert np.all(np.isfinite(gradient(layer, x)))


@FAST
@given(arrays, st.floats(1e-3, 1e3))
def test_invariant_to_positive_scaling(x, c):
    layer = InfNormalize()
    x = x[np.abs(x).max(axis=-1) > 1e-2]  # rows that stay above epsilon
    if x.size == 0:
        return
    scaled = (x * np.float32(c)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer(scaled)),
        keras.ops.convert_to_numpy(layer(x)),
        rtol=1e-5,
        atol=1e-6,
    )


@FAST
@given(arrays)
def test_largest_absolute_output_is_one_for_nonzero_rows(x):
    y = keras.ops.convert_to_numpy(InfNormalize()(x))
    peak = np.abs(y).max(axis=-1)
    norm = np.abs(x).max(axis=-1)
    # Rows with a norm under epsilon are divided by epsilon (documented).
    np.testing.assert_allclose(peak[norm >= 1e-12], 1.0, rtol=1e-6)
    assert np.all(peak[norm == 0] == 0)
    assert np.all(peak <= 1.0)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_keeps_dtype_and_zero(policy):
    keras.config.set_dtype_policy(policy)
    layer = InfNormalize()
    x = np.array([[0.0, 0.0, 0.0], [2.0, -8.0, 4.0]], "float32")
    y = layer(x)
    assert keras.backend.standardize_dtype(y.dtype) == policy.split("_")[1]
    y = keras.ops.convert_to_numpy(keras.ops.cast(y, "float32"))
    np.testing.assert_allclose(y, [[0, 0, 0], [0.25, -1.0, 0.5]], atol=1e-2)


def test_config_round_trip():
    layer = InfNormalize(axis=[1, 2], epsilon=1e-6)
    clone = InfNormalize.from_config(layer.get_config())
    assert clone.axis == [1, 2] and clone.epsilon == 1e-6
    assert layer.compute_output_shape((None, 3, 4)) == (None, 3, 4)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"axis": "last"}, TypeError, "Received: axis='last'"),
        ({"epsilon": 0}, ValueError, "Received: epsilon=0"),
        ({"epsilon": -1.0}, ValueError, "positive"),
    ],
)
def test_bad_arguments_say_what_was_received(kwargs, error, message):
    with pytest.raises(error, match=message):
        InfNormalize(**kwargs)


def test_out_of_bounds_axis_is_reported():
    with pytest.raises(ValueError, match="out of bounds"):
        InfNormalize(axis=3).compute_output_shape((None, 4))


def test_layer_harness(tmp_path):
    run_layer_test(
        InfNormalize,
        {"axis": -1},
        np.random.default_rng(0).normal(size=(2, 3, 4)).astype("float32"),
        (2, 3, 4),
        tmp_path=tmp_path,
        expected_num_trainable_weights=0,
        atol=1e-6,
    )
