"""The `keras-transfer` command, run for real on a tiny image folder.

The main flow runs the installed command in subprocesses; the bad-input
cases call the same `main()` in-process (one import, not one per case),
and one of them runs as a subprocess to show the exit code and the
missing traceback.
"""

import json
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image

from keras_transfer import cli
from tests.conftest import BACKEND, ROOT, runs_once_in, subprocess_env

pytestmark = runs_once_in("torch")

COLORS = {"blue": (30, 30, 200), "green": (30, 200, 30), "red": (200, 30, 30)}
# VGG16 keeps colour apart even with random weights (the MobileNets' random
# features vanish), and it builds in a second at 32 px.
FIT = ["--backbone", "vgg16", "--weights", "none", "--image-size", "32", "--batch-size", "8"]


def _folder(root, per_class=8, classes=COLORS):
    rng = np.random.default_rng(0)
    for name, color in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(np.array(color) + rng.normal(0, 25, (36, 44, 3)), 0, 255)
            Image.fromarray(pixels.astype("uint8")).save(root / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    _folder(root / "train")
    _folder(root / "val", per_class=4)
    (root / "train" / "red" / "notes.txt").write_text("not an image")
    return root


def command(*args, entry_point=False):
    exe = [str(pathlib.Path(sys.executable).parent / "keras-transfer")] if entry_point else [
        sys.executable, "-m", "keras_transfer"]
    return subprocess.run([*exe, *map(str, args)], env=subprocess_env(BACKEND),
                          capture_output=True, text=True, timeout=300, cwd=ROOT)


@pytest.fixture(scope="module")
def run(photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "colors"
    result = command("fit", photos, *FIT, "--epochs", "12", "--lr", "0.03", "--out", out,
                     entry_point=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return out, result


def test_fit_writes_the_whole_run(run):
    out, result = run
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json", "confusion.png", "curves.png", "metrics.json", "model.keras"]
    for png in ("curves.png", "confusion.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["history"]["val_accuracy"]) == 12
    assert metrics["accuracy"] > 0.9  # three colours, well apart
    assert metrics["confusion_matrix"] == np.diag([4, 4, 4]).tolist() or metrics["accuracy"] < 1
    assert set(metrics["per_class"]) == set(COLORS)
    assert metrics["images_per_s"] > 0 and metrics["wall_time_s"] > 0
    # The file that is not an image was skipped with a warning, not fatal.
    assert metrics["skipped_files"] == ["notes.txt (UnidentifiedImageError)"]
    assert "skipped 1 files" in result.stderr and "notes.txt" in result.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["class_names"] == sorted(COLORS)
    assert config["settings"]["backbone"] == "vgg16" and config["settings"]["epochs"] == 12
    assert config["command"][:2] == ["keras-transfer", "fit"] and "--lr" in config["command"]
    assert "val accuracy" in result.stdout and "images/s" in result.stdout


def test_evaluate_matches_the_run(run, photos):
    out, _ = run
    result = command("evaluate", out, photos)
    assert result.returncode == 0, result.stderr[-3000:]
    fitted = json.loads((out / "metrics.json").read_text())["accuracy"]
    printed = float(result.stdout.split("accuracy ")[1].split()[0])
    assert printed == pytest.approx(fitted, abs=1e-4)
    evaluated = json.loads((out / "evaluation" / "metrics.json").read_text())
    assert evaluated["accuracy"] == pytest.approx(fitted, abs=1e-6)
    assert (out / "evaluation" / "confusion.png").is_file()


def test_predict_gives_the_class_the_model_gives_in_python(run, photos):
    out, _ = run
    image = photos / "val" / "green" / "0.png"
    result = command("predict", out / "model.keras", image, "--top-k", "2", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(result.stdout)
    model = keras.saving.load_model(out / "model.keras")
    pixels = np.asarray(Image.open(image).convert("RGB").resize((32, 32), Image.BILINEAR))
    probabilities = np.asarray(model.predict(pixels[None].astype("float32"), verbose=0))[0]
    names = sorted(COLORS)
    assert [t["class"] for t in rows[0]["top"]] == [names[i] for i in np.argsort(-probabilities)[:2]]
    assert rows[0]["top"][0]["probability"] == pytest.approx(probabilities.max(), abs=1e-3)
    assert rows[0]["top"][0]["class"] == "green"


@pytest.mark.parametrize("strategy, phases", [
    ("fine_tune", ["head", "unfrozen"]), ("gradual", ["head", "gradual unfreezing"])])
def test_fine_tune_and_gradual_strategies(photos, tmp_path, strategy, phases):
    out = tmp_path / strategy
    assert cli.main(["fit", str(photos), *FIT, "--strategy", strategy, "--epochs", "1",
                     "--out", str(out), "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert [p["name"] for p in metrics["phases"]] == phases
    assert len(metrics["history"]["loss"]) == 2  # one head epoch, then one more
    assert (out / "curves.png").is_file()


def test_backbones_lists_the_registry(capsys):
    assert cli.main(["backbones", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == len([n for n in dir(keras.applications) if n[0].isupper()])
    vgg = next(r for r in rows if r["name"] == "VGG16")
    assert (vgg["input_size"], vgg["preprocessing"], vgg["blocks"], vgg["parameters"]) == (
        224, "caffe", 5, 14_714_688)


def _bad(capsys, *argv):
    assert cli.main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


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
        capsys, "fit", photos, *FIT, "--epochs", "0")


def test_an_existing_run_is_refused_unless_overwrite(photos, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "model.keras").write_text("an earlier run")
    assert "--overwrite" in _bad(capsys, "fit", photos, *FIT, "--out", out)
    assert (out / "model.keras").read_text() == "an earlier run"  # nothing lost
    assert cli.main(["fit", str(photos), *FIT, "--epochs", "1", "--out", str(out),
                     "--overwrite", "--quiet"]) == 0
    assert (out / "metrics.json").is_file()
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]  # no leftovers


def test_bad_input_in_a_real_subprocess(tmp_path):
    result = command("fit", tmp_path / "missing", *FIT)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("keras-transfer fit: error: No image")
    assert "Traceback" not in result.stderr
