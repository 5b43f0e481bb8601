"""`ktr.export`: each format and quantization the backend can export, run in
its real runtime (ai-edge-litert or TensorFlow Lite, onnxruntime,
tf.saved_model) and compared with the Keras model."""

import json

import keras
import numpy as np
import pytest

import keras_transfer as ktr
from keras_transfer.deploy.exporter import BACKENDS
from tests.conftest import BACKEND

SIZE = 32


@pytest.fixture(scope="module")
def classifier():
    """A tiny trained classifier, shared by the module's tests (exporting
    reads it, never changes it): the red channel's mean decides the class."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (48, SIZE, SIZE, 3)).astype("uint8")
    labels = (images[..., 0].mean((1, 2)) > 127.5).astype("int64")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 127.5, -1)(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(images, labels, epochs=2, verbose=0)
    return model, images, labels


CASES = [
    (fmt, quantize)
    for fmt, quantizations in (
        ("litert", ("none", "float16", "dynamic", "int8")),
        ("onnx", ("none",)),
        ("saved_model", ("none",)),
    )
    for quantize in quantizations
    if BACKEND in BACKENDS[fmt]
]


@pytest.mark.parametrize("fmt,quantize", CASES)
def test_the_export_runs_in_its_runtime_and_agrees(fmt, quantize, classifier, tmp_path):
    model, images, labels = classifier
    record = ktr.export(
        model,
        tmp_path / "out",
        fmt,
        quantize=quantize,
        class_names=["blue", "red"],
        calibration=images if quantize == "int8" else None,
        check=(images, labels),
    )
    parity = record["parity"]
    assert parity["images"] == len(images)
    if quantize in ("none", "float16"):
        # The exporter refuses a float export outside these; the test says so too.
        assert parity["agreement"] >= 0.99
        assert parity["max_probability_difference"] <= (1e-3 if quantize == "none" else 1e-2)
    assert parity["accuracy_drop"] <= 0.01
    assert parity["keras_accuracy"] == pytest.approx(
        float(np.mean(model.predict(images, verbose=0).argmax(-1) == labels)), abs=1e-4
    )
    written = json.loads((tmp_path / "out" / "export.json").read_text())
    assert written == json.loads(json.dumps(record))
    assert (tmp_path / "out" / "labels.txt").read_text() == "blue\nred\n"
    assert written["input"]["shape"] == [None, SIZE, SIZE, 3]
    assert written["output"]["meaning"] == "probabilities"
    assert written["size_bytes"] > 0 and (tmp_path / "out" / written["file"]).exists()
    if quantize == "int8":
        assert written["calibration"] == {"images": len(images), "from": "an array"}


@pytest.mark.skipif(
    BACKEND != "tensorflow",
    reason="backend-independent (the synthetic check's images): runs once, in the "
    "TensorFlow process",
)
def test_without_check_images_the_check_uses_synthetic_ones(classifier, tmp_path):
    model = classifier[0]
    record = ktr.export(model, tmp_path / "out", "onnx")
    assert record["parity"]["images_from"] == "8 synthetic images"
    assert record["parity"]["keras_accuracy"] is None and record["parity"]["agreement"] == 1.0


def test_bad_arguments_say_what_was_received(classifier, tmp_path):
    model, images, _ = classifier
    with pytest.raises(ValueError, match="Received: format='tflite'"):
        ktr.export(model, tmp_path / "a", "tflite")
    with pytest.raises(ValueError, match="Received: format='onnx', quantize='int8'"):
        ktr.export(model, tmp_path / "a", "onnx", quantize="int8", calibration=images)
    with pytest.raises(ValueError, match="needs `calibration` images"):
        ktr.export(model, tmp_path / "a", "litert", quantize="int8")
    if BACKEND == "tensorflow":  # the backend is checked first: LiteRT's
        with pytest.raises(ValueError, match=r"`calibration` images must be shaped \(N, 32, 32"):
            ktr.export(model, tmp_path / "a", "litert", quantize="int8", calibration=images[:, :8])
    with pytest.raises(ValueError, match="Received: max_drop=-1"):
        ktr.export(model, tmp_path / "a", "litert", max_drop=-1)
    refused = [fmt for fmt, backends in BACKENDS.items() if BACKEND not in backends]
    for fmt in refused:
        with pytest.raises(ValueError, match=f"KERAS_BACKEND=.*Received: backend '{BACKEND}'"):
            ktr.export(model, tmp_path / "a", fmt)
    assert not (tmp_path / "a").exists()


def test_an_existing_folder_is_replaced_only_when_it_is_an_export(classifier, tmp_path):
    model = classifier[0]
    fmt = next(fmt for fmt, backends in BACKENDS.items() if BACKEND in backends)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's")
    with pytest.raises(FileExistsError, match="pass --overwrite"):
        ktr.export(model, mine, fmt)
    with pytest.raises(FileExistsError, match="not a keras-transfer run"):
        ktr.export(model, mine, fmt, overwrite=True)
    assert (mine / "notes.txt").read_text() == "the user's"
    ktr.export(model, tmp_path / "out", fmt)
    record = ktr.export(model, tmp_path / "out", fmt, overwrite=True)
    assert json.loads((tmp_path / "out" / "export.json").read_text())["format"] == record["format"]


@pytest.mark.skipif(BACKEND not in BACKENDS["litert"], reason="LiteRT exports from TensorFlow")
def test_int8_weights_are_per_tensor_in_convolutions_and_per_channel_in_depthwise_ones(
    classifier, tmp_path
):
    from ai_edge_litert.interpreter import Interpreter

    images = classifier[1]
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    x = keras.layers.DepthwiseConv2D(3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    record = ktr.export(
        model, tmp_path / "out", "litert", quantize="int8", calibration=images, check=images
    )
    interpreter = Interpreter(model_path=str(tmp_path / "out" / "model.tflite"))
    scales = {
        tuple(t["shape"]): len(t["quantization_parameters"]["scales"])
        for t in interpreter.get_tensor_details()
        if t["dtype"] == np.int8 and len(t["shape"]) == 4 and t["shape"][0] in (1, 8)
    }
    assert scales[(8, 3, 3, 3)] == 1  # Conv2D: one scale
    assert scales[(1, 3, 3, 8)] == 8  # DepthwiseConv2D: one per channel
    # Float32 in and out, as the Keras model.
    assert interpreter.get_input_details()[0]["dtype"] == np.float32
    assert interpreter.get_output_details()[0]["dtype"] == np.float32
    assert record["parity"]["agreement"] >= 0.9


# One format a backend, each format once: LiteRT from TensorFlow, ONNX from
# torch, SavedModel from JAX.
_SCORED = {"tensorflow": "litert", "torch": "onnx", "jax": "saved_model"}


@pytest.fixture(scope="module")
def scored(classifier):
    """A model with an unknown score, and its score before the softmax."""
    _, images, labels = classifier
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 127.5, -1)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, activation="relu")(x))
    head = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)], name="head")
    scored = ktr.fit_unknown(keras.Model(inputs, head(x)), images, images[:24], labels, labels[:24])
    return keras.Model(inputs, keras.layers.Softmax(name="probabilities")(scored.output)), scored


@pytest.mark.parametrize("fmt", [_SCORED[BACKEND]])
def test_the_unknown_score_is_exported_as_a_second_named_output(fmt, scored, classifier, tmp_path):
    _, images, labels = classifier
    model, scored = scored
    record = ktr.export(model, tmp_path / "out", fmt, check=(images, labels))
    threshold = scored.unknown["threshold"]
    assert record["unknown"] == {
        "output": "unknown_score",
        "shape": [None],
        "threshold": threshold,
        "outputs": ["probabilities", "unknown_score"],
    }
    assert record["parity"]["agreement"] == 1.0 and record["parity"]["unknown_agreement"] == 1.0
    assert record["parity"]["max_score_difference"] < 1e-2


@pytest.mark.skipif(BACKEND not in BACKENDS["litert"], reason="LiteRT exports from TensorFlow")
def test_int8_keeps_the_unknown_score_in_float(scored, classifier, tmp_path):
    """Quantized, the score's last op clipped it at 0: no op of the score
    is int8, and its output is float32, beside the int8 network."""
    from ai_edge_litert.interpreter import Interpreter

    _, images, labels = classifier
    model, _ = scored
    record = ktr.export(
        model, tmp_path / "out", "litert", quantize="int8", calibration=images, check=images
    )
    interpreter = Interpreter(model_path=str(tmp_path / "out" / "model.tflite"))
    output = interpreter.get_signature_runner().get_output_details()["unknown_score"]["name"]
    dtypes = {t["name"]: t["dtype"] for t in interpreter.get_tensor_details()}
    assert np.int8 in dtypes.values()  # the network is quantized
    assert dtypes[output] == np.float32
    assert not [
        name for name, dtype in dtypes.items() if "unknown_score" in name and dtype == np.int8
    ]
    assert record["parity"]["unknown_agreement"] >= 0.9
