"""`keras-transfer export`, in process, on a small run: once, under
TensorFlow, which exports every format. That the command chooses a backend
for the format before Keras loads (a run trained under JAX exports to
LiteRT) is checked in a fresh process by `tests/test_structure.py`; each
format under each backend by `tests/deploy/test_exporter.py`."""

import json
import shutil

import keras
import pytest

import keras_transfer as ktr
from keras_transfer.commands import cli
from keras_transfer.images.folder import ImageFolder
from keras_transfer.layers import TemperatureScaling
from tests.command_line import COLORS, _bad
from tests.conftest import runs_once_in, tiny_backbone

pytestmark = runs_once_in("tensorflow")


@pytest.fixture(scope="module")
def small_run(photos, tmp_path_factory):
    """A run folder as `fit` writes it (model.keras with its softmax,
    config.json naming the classes and the photos), of a tiny net trained
    on the coloured photos: the VGG16 of the shared `run` took 40 s to
    quantize."""
    train = ImageFolder.load(photos / "train", (32, 32))
    keras.utils.set_random_seed(0)
    model = ktr.transfer(
        tiny_backbone(top=False),
        3,
        weights=None,
        input_shape=(32, 32, 3),
        preprocessing="unit",
        strategy="fine_tune",
    )
    ktr.unfreeze(model)
    model.compile(
        keras.optimizers.Adam(1e-2),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(train.images, train.labels, epochs=30, batch_size=8, verbose=0)
    # Calibrated as `fit` saves a model: the temperature inside, before the softmax.
    logits = TemperatureScaling(2.0, name="temperature_scaling")(model.output)
    probabilities = keras.layers.Softmax(name="probabilities")(logits)
    out = tmp_path_factory.mktemp("runs") / "small"
    out.mkdir()
    keras.Model(model.input, probabilities).save(out / "model.keras")
    config = {"class_names": list(COLORS), "settings": {"data_dir": str(photos)}}
    (out / "config.json").write_text(json.dumps(config))
    return out


def test_int8_litert_calibrates_on_the_runs_photos_and_checks_on_its_validation(small_run, capsys):
    argv = ["export", str(small_run), "--format", "litert", "--quantize", "int8"]
    with pytest.warns(UserWarning, match="Skipped a file that could not be decoded") as caught:
        assert cli.main(argv) == 0
    skipped = [str(w.message) for w in caught if "could not be decoded" in str(w.message)]
    assert len(skipped) == 1 and "notes.txt (UnidentifiedImageError" in skipped[0]
    printed = capsys.readouterr().out
    folder = small_run / "export" / "litert_int8"
    record = json.loads((folder / "export.json").read_text())
    assert record["exported_under"]["backend"] == "tensorflow" and record["temperature"] == 2.0
    # The 24 training photos (the text file among them is skipped), 4 a class to check.
    assert record["calibration"]["images"] == 24
    assert record["parity"]["images"] == 12 and record["parity"]["accuracy_drop"] <= 0.01
    assert (folder / "labels.txt").read_text().split() == list(COLORS)
    assert "calibrated on 24 images" in printed
    assert (folder / "model.tflite").stat().st_size == record["size_bytes"]


def test_onnx_and_the_overwrite_rule(small_run, capsys, tmp_path):
    target = tmp_path / "onnx"
    argv = ["export", str(small_run), "--format", "onnx", "--out", str(target), "--quiet"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "top-1 agreement 1.0000" in printed and "accuracy: Keras" in printed
    record = json.loads((target / "export.json").read_text())
    assert record["parity"]["keras_accuracy"] == record["parity"]["export_accuracy"]
    # The file gives the calibrated probabilities, as the Keras model does.
    assert record["temperature"] == 2.0 and record["parity"]["max_probability_difference"] < 1e-4
    err = _bad(capsys, *argv)
    assert "pass --overwrite" in err
    assert cli.main([*argv, "--overwrite"]) == 0


def test_bad_runs_and_missing_calibration_exit_2(small_run, capsys, tmp_path):
    err = _bad(capsys, "export", tmp_path / "nothing", "--format", "saved_model")
    assert "No model at" in err and "nothing" in err
    # A bare .keras file records no training photos to calibrate on.
    shutil.copy(small_run / "model.keras", tmp_path / "model.keras")
    err = _bad(capsys, "export", tmp_path / "model.keras", "--quantize", "int8")
    assert "--calibration DIR" in err
    err = _bad(capsys, "export", small_run, "--format", "onnx", "--max-drop", "-1")
    assert "--max-drop must be at least 0. Received: -1" in err
