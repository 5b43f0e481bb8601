"""One harness for the library's layers, as KerasHub's `run_layer_test`:
every layer in `keras_transfer/layers/` runs through `run_layer_test`, in
each backend's pytest process, and `HubLayer` in the TensorFlow one.

It checks, for one set of constructor arguments:
- the output shape, eager and symbolic, against `compute_output_shape`;
- the `get_config` / `from_config` round trip: the same config, and the
  same outputs with the same weights;
- a `.keras` round trip inside a model: the same outputs after loading;
- each dtype policy (`float32`, `mixed_float16`, `mixed_bfloat16`): outputs
  in the compute dtype (or float32 where the layer keeps float32), and
  variables in the variable dtype.
"""

import keras
import numpy as np

POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")


def run_layer_test(
    layer_cls,
    init_kwargs,
    input_data,
    expected_output_shape,
    *,
    tmp_path,
    expected_num_trainable_weights=None,
    float32_output=False,
    atol=1e-6,
    shape_method=True,
    safe_mode=True,
):
    """Runs the checks above.

    Args:
        layer_cls: the layer class.
        init_kwargs: its constructor arguments.
        input_data: an array, or a list of arrays for a layer of several
            inputs.
        expected_output_shape: the output's shape for `input_data`, or a
            list of shapes for a layer of several outputs.
        tmp_path: a folder for the `.keras` file.
        expected_num_trainable_weights: checked when given.
        float32_output: the layer computes in float32 whatever its policy
            (as `ImagePreprocessing` is built), so only float32 is checked.
        atol: the round trips' tolerance.
        shape_method: check `compute_output_shape`; `False` for a layer
            whose shape only tracing tells (`HubLayer`: Keras traces the
            SavedModel's graph; the symbolic call is still checked).
        safe_mode: `load_model`'s; `False` for a layer that safe mode
            refuses (`HubLayer` runs a graph outside the `.keras` file).
    """
    data = [np.asarray(x) for x in input_data] if isinstance(input_data, list) else input_data
    shapes = [x.shape for x in data] if isinstance(data, list) else data.shape
    several = isinstance(expected_output_shape, list)
    expected_shapes = expected_output_shape if several else [expected_output_shape]
    layer = layer_cls(**init_kwargs)
    output = _numpy(layer(data))
    assert [o.shape for o in output] == [tuple(s) for s in expected_shapes]
    if shape_method:
        computed = layer.compute_output_shape(shapes)
        assert [tuple(s) for s in (computed if several else [computed])] == [
            tuple(s) for s in expected_shapes
        ]
    if expected_num_trainable_weights is not None:
        assert len(layer.trainable_weights) == expected_num_trainable_weights

    symbolic = (
        [keras.Input(s[1:]) for s in shapes] if isinstance(data, list) else keras.Input(shapes[1:])
    )
    symbolic_output = keras.tree.flatten(layer_cls(**init_kwargs)(symbolic))
    assert [tuple(o.shape[1:]) for o in symbolic_output] == [tuple(s[1:]) for s in expected_shapes]

    config = layer.get_config()
    copy = layer_cls.from_config(config)
    assert copy.get_config() == config
    copy(data)
    copy.set_weights(layer.get_weights())
    for got, want in zip(_numpy(copy(data)), output):
        np.testing.assert_allclose(got, want, atol=atol)

    model = keras.Model(symbolic, layer(symbolic))
    path = tmp_path / f"{layer_cls.__name__}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=safe_mode)
    for got, want in zip(_numpy(loaded(data)), _numpy(model(data))):
        np.testing.assert_allclose(got, want, atol=atol)

    for name in POLICIES:
        policy = keras.DTypePolicy(name)
        typed = layer_cls(**{**init_kwargs, "dtype": policy})
        expected = "float32" if float32_output else policy.compute_dtype
        for typed_output in keras.tree.flatten(typed(data)):
            assert keras.backend.standardize_dtype(typed_output.dtype) == expected, name
        for weight in typed.weights:
            assert keras.backend.standardize_dtype(weight.dtype) == policy.variable_dtype, name


def _numpy(outputs):
    """A layer's output, or each of its outputs, as a list of arrays."""
    return [np.asarray(keras.ops.convert_to_numpy(o)) for o in keras.tree.flatten(outputs)]
