"""HubLayer on SavedModels the tests build: TF2 reusable (tf_keras, as TF-Hub
models were made, and `kt.hub.export`), signature-only, TF1 Hub format, and
the real ImageNet MobileNetV2-0.35. No network: a Hub URL resolves through
tensorflow_hub's cache, filled by the test."""

import hashlib
import shutil

import keras
import numpy as np
import pytest

import keras_transfer as kt
from tests.conftest import (
    BACKEND,
    HYMENOPTERA,
    as_numpy,
    pixels,
    tiny_backbone,
)
from tests.conftest import (
    HUB_L2 as L2,
)
from tests.layer_test_case import run_layer_test

tf_only = pytest.mark.tensorflow_only


def _images(n=8, size=16, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (n, size, size, 3)).astype("float32")


@pytest.fixture(scope="module")
def signature_only(tmp_path_factory):
    import tensorflow as tf

    class Module(tf.Module):
        def __init__(self):
            self.w = tf.Variable(np.arange(6, dtype="float32").reshape(3, 2))

        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
        def serve(self, x):
            features = tf.matmul(x, self.w)
            return {"features": features, "logits": 2.0 * features}

    module = Module()
    path = tmp_path_factory.mktemp("hub") / "signatures"
    tf.saved_model.save(
        module, str(path), signatures={"serving_default": module.serve, "scores": module.serve}
    )
    return path


@pytest.fixture(scope="module")
def tf1_module(tmp_path_factory):
    """The TF1 Hub format: a TF1 SavedModel with the empty tag set, a
    `default` signature, and the tfhub_module.pb marker."""
    import tensorflow as tf

    path = tmp_path_factory.mktemp("hub") / "tf1"
    with tf.Graph().as_default():
        images = tf.compat.v1.placeholder(tf.float32, [None, None, None, 3], name="images")
        w = tf.compat.v1.get_variable("w", initializer=np.eye(3, 5, dtype="float32"))
        features = tf.matmul(tf.reduce_mean(images, axis=[1, 2]), w)
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            builder = tf.compat.v1.saved_model.Builder(str(path))
            signature = tf.compat.v1.saved_model.signature_def_utils.predict_signature_def(
                {"images": images}, {"default": features}
            )
            builder.add_meta_graph_and_variables(
                session, [], signature_def_map={"default": signature}
            )
            builder.save()
    (path / "tfhub_module.pb").write_bytes(b"\x08\x03")  # ModuleDef{format: 3}
    return path


def _bn_stats(layer):
    return [as_numpy(w).copy() for w in layer.weights if "moving" in w.path]


@tf_only
def test_reusable_model_weights_keep_their_split(reusable):
    frozen = kt.hub.HubLayer(reusable)
    assert (len(frozen.weights), len(frozen.trainable_weights)) == (6, 0)
    trainable = kt.hub.HubLayer(reusable, trainable=True)
    assert (len(trainable.trainable_weights), len(trainable.non_trainable_weights)) == (4, 2)
    assert all("moving" in w.path for w in trainable.non_trainable_weights)
    assert trainable.weights[0].path.startswith(trainable.name + "/")


@tf_only
def test_the_layer_harness_under_every_policy(reusable, tmp_path):
    # The SavedModel's graph computes in float32 whatever the policy.
    x = _images()
    out = as_numpy(kt.hub.HubLayer(reusable)(x))
    run_layer_test(
        kt.hub.HubLayer,
        {"handle": reusable},
        x,
        out.shape,
        tmp_path=tmp_path,
        expected_num_trainable_weights=0,
        float32_output=True,
        atol=1e-5,
        shape_method=False,
        safe_mode=False,
    )


@tf_only
def test_load_options_and_mixed_precision(reusable):
    import tensorflow as tf

    options = tf.saved_model.LoadOptions(experimental_io_device="/job:localhost")
    layer = kt.hub.HubLayer(reusable, load_options=options)
    assert layer.get_config()["load_options"]["experimental_io_device"] == "/job:localhost"
    assert kt.hub.HubLayer.from_config(layer.get_config()).load_options == layer.load_options
    x = _images()
    expected = as_numpy(layer(x))
    keras.config.set_dtype_policy("mixed_float16")
    # The graph's dtypes are fixed: float16 inputs are cast to its float32.
    model = keras.Sequential([keras.Input((16, 16, 3)), kt.hub.HubLayer(reusable)])
    out = model(x)
    assert out.dtype == "float32"
    np.testing.assert_allclose(as_numpy(out), expected, atol=1e-2)


@tf_only
@pytest.mark.parametrize("trainable", [False, True])
def test_fit_trains_the_model_only_when_trainable(reusable, trainable):
    layer = kt.hub.HubLayer(reusable, trainable=trainable)
    inputs = keras.Input((16, 16, 3))
    model = keras.Model(inputs, keras.layers.Dense(2)(layer(inputs)))  # functional
    model.compile(keras.optimizers.SGD(0.1), "mse")
    before = [as_numpy(w).copy() for w in layer.weights]
    model.fit(_images(), np.ones((8, 2)), epochs=2, batch_size=4, verbose=0)
    changed = [not np.array_equal(a, as_numpy(w)) for a, w in zip(before, layer.weights)]
    # kernel, bias, gamma, beta, moving mean, moving variance
    assert changed == [trainable] * 6


@tf_only
def test_batchnorm_statistics_follow_the_training_flag(reusable):
    x = _images()
    trainable = kt.hub.HubLayer(reusable, trainable=True)
    stats = _bn_stats(trainable)
    inference = as_numpy(trainable(x, training=False))
    assert all(np.array_equal(a, b) for a, b in zip(stats, _bn_stats(trainable)))
    trained = as_numpy(trainable(x, training=True))
    assert not any(np.array_equal(a, b) for a, b in zip(stats, _bn_stats(trainable)))
    assert not np.allclose(trained, inference)  # batch statistics were used

    frozen = kt.hub.HubLayer(reusable)  # a fresh load: the statistics as saved
    stats = _bn_stats(frozen)
    np.testing.assert_allclose(as_numpy(frozen(x, training=True)), inference, rtol=1e-6)
    assert all(np.array_equal(a, b) for a, b in zip(stats, _bn_stats(frozen)))


@tf_only
def test_regularization_losses_count_while_trainable(reusable):
    x, y = _images(), np.zeros((8, 4), "float32")
    for trainable in (True, False):
        layer = kt.hub.HubLayer(reusable, trainable=trainable)
        model = keras.Sequential([keras.Input((16, 16, 3)), layer])
        model.compile("sgd", "mse")
        model(x)
        kernel = as_numpy(layer.weights[0])
        expected = L2 * np.sum(kernel**2)
        if trainable:
            assert len(model.losses) == 1
            np.testing.assert_allclose(as_numpy(model.losses[0]), expected, rtol=1e-5)
        else:
            assert model.losses == []
        mse = np.mean(as_numpy(model.predict(x, verbose=0)) ** 2)
        loss = model.evaluate(x, y, verbose=0)
        np.testing.assert_allclose(loss, mse + (expected if trainable else 0.0), rtol=1e-4)


@tf_only
def test_outputs_and_weights_match_hub_keras_layer_under_tf_keras(reusable):
    tf_keras = pytest.importorskip("tf_keras", reason="parity needs tf_keras")
    hub = kt.hub._tensorflow_hub()
    x = _images()
    for trainable in (False, True):
        theirs = hub.KerasLayer(str(reusable), trainable=trainable)
        their_model = tf_keras.Sequential([tf_keras.Input((16, 16, 3)), theirs])
        ours = kt.hub.HubLayer(reusable, trainable=trainable)
        assert len(ours.trainable_weights) == len(theirs.trainable_weights)
        assert len(ours.weights) == len(theirs.weights)
        np.testing.assert_allclose(as_numpy(ours(x)), their_model(x).numpy(), rtol=1e-6)
        np.testing.assert_allclose(
            as_numpy(ours(x, training=True)), their_model(x, training=True).numpy(), rtol=1e-5
        )


@tf_only
def test_saved_model_round_trip_keeps_the_trained_values(reusable, tmp_path):
    layer = kt.hub.HubLayer(reusable, trainable=True, name="encoder")
    model = keras.Sequential([keras.Input((16, 16, 3)), layer, keras.layers.Dense(2)])
    model.compile(keras.optimizers.SGD(0.5), "mse")
    model.fit(_images(), np.ones((8, 2)), epochs=2, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    x = _images(seed=1)
    with pytest.raises(ValueError, match="safe_mode=False"):
        keras.models.load_model(path)
    reloaded = keras.models.load_model(path, safe_mode=False)
    np.testing.assert_allclose(as_numpy(reloaded(x)), as_numpy(model(x)), rtol=1e-6)
    hub_layer = reloaded.get_layer("encoder")
    assert hub_layer.get_config()["handle"] == str(reusable) and hub_layer.trainable
    # The values came from the .keras file, not from the handle.
    fresh = kt.hub.HubLayer(reusable)
    assert not np.allclose(as_numpy(fresh(x)), as_numpy(hub_layer(x)))
    clone = kt.hub.HubLayer.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()


@tf_only
def test_signatures_choose_outputs_by_key(signature_only):
    x = np.eye(3, dtype="float32")
    w = np.arange(6, dtype="float32").reshape(3, 2)
    logits = kt.hub.HubLayer(signature_only, signature="serving_default", output_key="logits")
    np.testing.assert_allclose(as_numpy(logits(x)), 2 * w)
    both = kt.hub.HubLayer(signature_only, signature="scores", signature_outputs_as_dict=True)
    out = both(x)
    assert sorted(out) == ["features", "logits"]
    np.testing.assert_allclose(as_numpy(out["features"]), w)
    model = keras.Sequential([keras.Input((3,)), logits, keras.layers.Dense(1)])
    assert model.output_shape == (None, 1)
    assert len(logits.weights) == 1 and logits.trainable_weights == []

    with pytest.raises(ValueError, match=r"several outputs, \['features', 'logits'\]"):
        kt.hub.HubLayer(signature_only, signature="serving_default")
    with pytest.raises(
        ValueError, match=r"no output 'probs'. Its outputs: \['features', 'logits'\]"
    ):
        kt.hub.HubLayer(signature_only, signature="serving_default", output_key="probs")
    with pytest.raises(
        ValueError,
        match=r"no signature 'serve'. Available signatures: "
        r"\['scores', 'serving_default'\]",
    ):
        kt.hub.HubLayer(signature_only, signature="serve", output_key="logits")
    with pytest.raises(ValueError, match="not callable .* Pass `signature=`"):
        kt.hub.HubLayer(signature_only)
    with pytest.raises(ValueError, match="signature .* inference only"):
        kt.hub.HubLayer(signature_only, signature="scores", output_key="logits", trainable=True)


@tf_only
def test_tf1_hub_format_loads_for_inference_only(tf1_module):
    layer = kt.hub.HubLayer(tf1_module)
    assert layer.signature == "default" and not layer.fine_tunable
    x = _images(4, size=5)
    expected = x.mean(axis=(1, 2)) @ np.eye(3, 5, dtype="float32")
    np.testing.assert_allclose(as_numpy(layer(x)), expected, rtol=1e-6)
    model = kt.transfer(str(tf1_module), 2, input_shape=(8, 8, 3))
    assert model.predict(pixels(2, size=8), verbose=0).shape == (2, 2)
    with pytest.raises(ValueError, match="TF1 Hub format.*Received: trainable=True"):
        kt.hub.HubLayer(tf1_module, trainable=True)
    with pytest.raises(ValueError, match="TF1 Hub format"):
        kt.transfer(str(tf1_module), 2, input_shape=(8, 8, 3), strategy="fine_tune")
    with pytest.raises(ValueError, match="TF1 Hub format"):
        kt.unfreeze(model)
    assert model.get_layer("backbone").trainable_weights == []  # left as it was


@tf_only
def test_bad_handles_and_inputs_get_clear_errors(reusable, signature_only, tmp_path):
    with pytest.raises(FileNotFoundError, match="the path does not exist. Received: handle="):
        kt.hub.HubLayer(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ValueError, match=r"not a SavedModel directory.*Found: \['notes.txt'\]"):
        kt.hub.HubLayer(tmp_path)
    with pytest.raises(TypeError, match="Received: handle=3"):
        kt.hub.HubLayer(3)
    layer = kt.hub.HubLayer(reusable)
    with pytest.raises(
        ValueError,
        match=r"shape \(None, None, None, 3\).*Received: inputs of "
        r"shape \(None, 16, 16\)",
    ):
        layer(keras.Input((16, 16)))
    with pytest.raises(
        ValueError, match=r"shape \(None, None, None, 3\).*shape \(None, 16, 16, 4\)"
    ):
        layer(keras.Input((16, 16, 4)))
    with pytest.raises(ValueError, match="dtype float32 .* Received: inputs of dtype int32"):
        layer(np.zeros((1, 4, 4, 3), "int32"))
    signature = kt.hub.HubLayer(signature_only, signature="scores", output_key="logits")
    with pytest.raises(
        ValueError, match=r"takes x of shape \(None, 3\).*Received: x of shape \(2, 4\)"
    ):
        signature(np.zeros((2, 4), "float32"))


@tf_only
def test_hub_handle_resolves_through_the_tfhub_cache(reusable, tmp_path, monkeypatch):
    handle = "https://tfhub.dev/keras-transfer/test-encoder/1"
    # tensorflow_hub caches a handle under sha1(handle); a filled cache
    # needs no network.
    shutil.copytree(reusable, tmp_path / hashlib.sha1(handle.encode()).hexdigest())
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path))
    layer = kt.hub.HubLayer(handle)
    x = _images()
    np.testing.assert_allclose(as_numpy(layer(x)), as_numpy(kt.hub.HubLayer(reusable)(x)))
    assert layer.get_config()["handle"] == handle


@tf_only
@pytest.mark.parametrize("strategy", ["feature_extraction", "fine_tune"])
def test_transfer_accepts_a_saved_model_directory_or_a_hub_layer(reusable, strategy, tmp_path):
    model = kt.transfer(str(reusable), 3, strategy=strategy, input_shape=(16, 16, 3))
    assert [layer.name for layer in model.layers] == ["image", "preprocessing", "backbone", "head"]
    assert model.get_layer("preprocessing").mode == "unit"  # Hub's [0, 1] pixels
    rows = kt.trainable_summary(model, print_fn=None)
    assert [row["block"] for row in rows] == ["hub", "head"]
    assert rows[0]["trainable"] == ("yes" if strategy == "fine_tune" else "no")
    hub_layer = model.get_layer("backbone").get_layer("hub")
    # pixels / 255 into the Hub model: the same features as the layer alone
    x = pixels(4, size=16)
    features = model.get_layer("backbone")(model.get_layer("preprocessing")(x))
    np.testing.assert_allclose(as_numpy(features), as_numpy(hub_layer(x / 255.0)), rtol=1e-5)

    model.compile(
        keras.optimizers.SGD(0.1), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    stats, kernel = _bn_stats(hub_layer), as_numpy(hub_layer.weights[0]).copy()
    model.fit(x, np.arange(4) % 3, epochs=1, verbose=0)
    assert np.array_equal(kernel, as_numpy(hub_layer.weights[0])) == (strategy != "fine_tune")
    # bn="inference" (the default) runs the Hub model in inference mode.
    assert all(np.array_equal(a, b) for a, b in zip(stats, _bn_stats(hub_layer)))

    kt.freeze(model)
    assert model.get_layer("backbone").trainable_weights == []
    kt.unfreeze(model, blocks=1, bn="train")
    assert len(model.get_layer("backbone").trainable_weights) == 4
    model.fit(x, np.arange(4) % 3, epochs=1, verbose=0)
    assert not any(np.array_equal(a, b) for a, b in zip(stats, _bn_stats(hub_layer)))

    layer_model = kt.transfer(
        kt.hub.HubLayer(reusable), 3, strategy=strategy, input_shape=(16, 16, 3)
    )
    assert layer_model.output.shape[-1] == 3
    # weights= a file: the fine-tuned values go into a fresh load of the handle.
    kt.save_weights_npz(model.get_layer("backbone"), tmp_path / "hub.npz")
    again = kt.transfer(reusable, 3, input_shape=(16, 16, 3), weights=tmp_path / "hub.npz")
    for a, b in zip(again.get_layer("backbone").weights, hub_layer.weights):
        np.testing.assert_array_equal(as_numpy(a), as_numpy(b))
    with pytest.raises(ValueError, match="takes images of any size .* pass `input_shape`"):
        kt.transfer(str(reusable), 3)
    with pytest.raises(ValueError, match="own weights.*Received: weights=None"):
        kt.transfer(str(reusable), 3, weights=None, input_shape=(16, 16, 3))


@tf_only
def test_gradual_unfreezing_treats_the_hub_model_as_one_block(reusable, capsys):
    model = kt.transfer(str(reusable), 2, input_shape=(16, 16, 3))
    model.compile(
        keras.optimizers.SGD(0.1), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    hub_layer = model.get_layer("backbone").get_layer("hub")
    seen = []
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: seen.append(len(hub_layer.trainable_weights))
    )
    model.fit(
        pixels(4, size=16),
        np.arange(4) % 2,
        epochs=3,
        verbose=0,
        callbacks=[kt.callbacks.GradualUnfreezing(start_epoch=1), record],
    )
    assert seen == [0, 4, 4]
    assert capsys.readouterr().out.count("GradualUnfreezing: epoch") == 1  # one block, once


@tf_only
def test_export_writes_a_reusable_saved_model_of_a_keras_model(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, kernel_regularizer=keras.regularizers.L2(L2), name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    path = tmp_path / "exported"
    kt.hub.export(model, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported"]  # nothing half-written
    with pytest.raises(FileExistsError, match="holds a SavedModel. Pass overwrite=True"):
        kt.hub.export(model, path)  # the default never replaces
    with pytest.raises(FileExistsError, match="overwrite=False"):
        kt.hub.export(model, path, overwrite=False)
    kt.hub.export(model, path, overwrite=True)  # a SavedModel may be replaced
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "photo.jpg").write_bytes(b"keep")
    with pytest.raises(FileExistsError, match="is not a SavedModel: it is never replaced"):
        kt.hub.export(model, mine, overwrite=True)
    assert (mine / "photo.jpg").read_bytes() == b"keep"
    layer = kt.hub.HubLayer(path, trainable=True)
    assert len(layer.trainable_weights) == len(model.trainable_weights) == 4
    assert len(layer.weights) == len(model.weights) == 6
    x = _images()
    np.testing.assert_allclose(as_numpy(layer(x)), as_numpy(model(x)), rtol=1e-5, atol=1e-6)
    layer(x)
    np.testing.assert_allclose(as_numpy(layer.losses[0]), as_numpy(model.losses[0]), rtol=1e-6)
    stats = _bn_stats(layer)
    layer(x, training=True)
    assert not any(np.array_equal(a, b) for a, b in zip(stats, _bn_stats(layer)))


@tf_only
@pytest.mark.shared_data
def test_real_mobilenet_v2_as_a_saved_model_gives_the_keras_features(hub_mobilenet_v2):
    path, keras_model = hub_mobilenet_v2  # [0, 1] pixels in, as Hub image models
    layer = kt.hub.HubLayer(path)
    assert len(layer.weights) == len(keras_model.weights) > 200
    files = sorted((HYMENOPTERA / "val").glob("*/*.jpg"))[::20][:8]
    images = (
        np.stack(
            [
                keras.utils.img_to_array(keras.utils.load_img(f, target_size=(224, 224)))
                for f in files
            ]
        )
        / 255.0
    )
    expected = as_numpy(keras_model(images, training=False))
    np.testing.assert_allclose(as_numpy(layer(images)), expected, atol=1e-5)
    assert expected.std() > 0.1  # real features, not a degenerate constant


@pytest.mark.skipif(BACKEND == "tensorflow", reason="checks the error on JAX and torch")
def test_other_backends_get_a_clear_error(tmp_path):
    with pytest.raises(RuntimeError, match=f"KERAS_BACKEND=tensorflow.*'{BACKEND}' backend"):
        kt.hub.HubLayer(tmp_path)
    with pytest.raises(RuntimeError, match="KERAS_BACKEND=tensorflow"):
        kt.hub.export(tiny_backbone(), tmp_path / "model")
