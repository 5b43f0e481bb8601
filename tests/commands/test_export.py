"""`keras-transfer export`, on the run the fit made (in the torch process)."""

import json
import shutil

from keras_transfer import cli
from tests.command_line import _bad, command
from tests.conftest import runs_once_in

pytestmark = runs_once_in("torch")


def test_a_torch_run_exports_to_int8_litert_under_tensorflow(run):
    """LiteRT is exported from TensorFlow: the command chooses that backend
    for a run trained under torch, calibrates on the run's training photos
    and checks on its validation photos."""
    out, _ = run
    result = command("export", out, "--format", "litert", "--quantize", "int8")
    assert result.returncode == 0, result.stderr[-3000:]
    folder = out / "export" / "litert_int8"
    record = json.loads((folder / "export.json").read_text())
    assert record["exported_under"]["backend"] == "tensorflow"
    # The 24 training photos (the text file among them is skipped), 4 a class to check.
    assert record["calibration"]["images"] == 24
    assert record["parity"]["images"] == 12 and record["parity"]["accuracy_drop"] <= 0.01
    assert (folder / "labels.txt").read_text().split() == ["blue", "green", "red"]
    assert "calibrated on 24 images" in result.stdout
    assert (folder / "model.tflite").stat().st_size == record["size_bytes"]


def test_onnx_under_torch_and_the_overwrite_rule(run, capsys, tmp_path):
    out, _ = run
    target = tmp_path / "onnx"
    argv = ["export", str(out), "--format", "onnx", "--out", str(target), "--quiet"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "top-1 agreement 1.0000" in printed and "accuracy: Keras" in printed
    record = json.loads((target / "export.json").read_text())
    assert record["parity"]["keras_accuracy"] == record["parity"]["export_accuracy"]
    err = _bad(capsys, *argv)
    assert "pass --overwrite" in err
    assert cli.main([*argv, "--overwrite"]) == 0


def test_bad_runs_and_missing_calibration_exit_2(run, capsys, tmp_path):
    out, _ = run
    err = _bad(capsys, "export", tmp_path / "nothing", "--format", "onnx")
    assert "No model at" in err and "nothing" in err
    # A bare .keras file records no training photos to calibrate on.
    shutil.copy(out / "model.keras", tmp_path / "model.keras")
    err = _bad(capsys, "export", tmp_path / "model.keras", "--quantize", "int8")
    assert "--calibration DIR" in err
    err = _bad(capsys, "export", out, "--format", "onnx", "--max-drop", "-1")
    assert "--max-drop must be at least 0. Received: -1" in err
