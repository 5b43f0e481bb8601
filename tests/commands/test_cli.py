"""The `keras-transfer` command, run for real on a tiny image folder.

The main flow runs the installed command in subprocesses; the bad-input
cases call the same `main()` in-process (one import, not one per case),
and one of them runs as a subprocess to show the exit code and the
missing traceback.
"""

from tests.command_line import COLORS, FIT, FIXED, _bad, _folder, command
from tests.conftest import runs_once_in

pytestmark = runs_once_in("torch")


def test_bad_input_is_exit_code_2_with_a_clear_line(photos, tmp_path, capsys):
    assert "No image directory" in _bad(capsys, "fit", tmp_path / "missing", *FIT)
    one = _folder(tmp_path / "one", 2, {"red": COLORS["red"]})
    assert "one class folder" in _bad(capsys, "fit", one, *FIT)
    empty = _folder(tmp_path / "empty", 2)
    for image in (empty / "blue").iterdir():
        image.unlink()
    assert "is empty" in _bad(capsys, "fit", empty, *FIT)
    err = _bad(capsys, "fit", photos, *FIT[2:], "--backbone", "resnet05")
    assert "Unknown backbone name" in err and "resnet50" in err.lower()
    assert "--epochs must be at least 1. Received: 0" in _bad(
        capsys, "fit", photos, *FIT, *FIXED, "--epochs", "0"
    )


def test_bad_input_in_a_real_subprocess(tmp_path):
    result = command("fit", tmp_path / "missing", *FIT)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("keras-transfer fit: error: No image")
    assert "Traceback" not in result.stderr


# --- Never delete what it did not write; exit 2 for what the user can fix ------------


def test_errors_the_user_can_fix_exit_2(photos, run, tmp_path, capsys):
    out, _ = run
    err = _bad(capsys, "fit", photos, *FIT, "--backbone-arg", "alpah=0.35")
    assert "refused `backbone_kwargs`" in err and "alpah" in err
    assert "--image-size must be at most 4096 pixels. Received: 100000" in _bad(
        capsys, "fit", photos, *FIT[:-4], "--image-size", "100000"
    )
    fake = tmp_path / "fake.keras"
    fake.write_text("not a model")
    assert "is not a Keras model file" in _bad(capsys, "predict", fake, photos / "val")
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "model.keras").write_bytes((out / "model.keras").read_bytes())
    (copy / "config.json").write_text('{"class_names": ["a", "b"]')
    assert "config.json' is damaged" in _bad(capsys, "predict", copy, photos / "val")
    (copy / "config.json").write_text('{"class_names": ["a", "b"]}')
    err = _bad(capsys, "predict", copy, photos / "val")
    assert "names 2 classes but the model has 3 outputs" in err
