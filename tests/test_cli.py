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

import keras_transfer as kt
from keras_transfer import adaptive, cli
from tests.conftest import BACKEND, ROOT, runs_once_in, subprocess_env

pytestmark = runs_once_in("torch")

COLORS = {"blue": (30, 30, 200), "green": (30, 200, 30), "red": (200, 30, 30)}
# VGG16 keeps colour apart even with random weights (the MobileNets' random
# features vanish), and it builds in a second at 32 px.
FIT = ["--backbone", "vgg16", "--weights", "none", "--image-size", "32", "--batch-size", "8"]
FIXED = ["--strategy", "feature_extraction"]  # --epochs and --lr set a fixed recipe


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
    exe = (
        [str(pathlib.Path(sys.executable).parent / "keras-transfer")]
        if entry_point
        else [sys.executable, "-m", "keras_transfer"]
    )
    return subprocess.run(
        [*exe, *map(str, args)],
        env=subprocess_env(BACKEND),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def run(photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "colors"
    result = command(
        "fit",
        photos,
        *FIT,
        *FIXED,
        "--epochs",
        "12",
        "--lr",
        "0.03",
        "--out",
        out,
        entry_point=True,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return out, result


def test_fit_writes_the_whole_run(run):
    out, result = run
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "confusion.png",
        "curves.png",
        "metrics.json",
        "model.keras",
    ]
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
    assert [t["class"] for t in rows[0]["top"]] == [
        names[i] for i in np.argsort(-probabilities)[:2]
    ]
    assert rows[0]["top"][0]["probability"] == pytest.approx(probabilities.max(), abs=1e-3)
    assert rows[0]["top"][0]["class"] == "green"


@pytest.mark.parametrize(
    "strategy, phases",
    [("fine_tune", ["head", "unfrozen"]), ("gradual", ["head", "gradual unfreezing"])],
)
def test_fine_tune_and_gradual_strategies(photos, tmp_path, strategy, phases):
    out = tmp_path / strategy
    assert (
        cli.main(
            [
                "fit",
                str(photos),
                *FIT,
                "--strategy",
                strategy,
                "--epochs",
                "1",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert [p["name"] for p in metrics["phases"]] == phases
    assert len(metrics["history"]["loss"]) == 2  # one head epoch, then one more
    assert (out / "curves.png").is_file()


def test_fit_runs_the_adaptive_recipe_by_default(photos, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(adaptive, "MAX_EPOCHS", 3)  # the record, not the accuracy, is tested
    out = tmp_path / "auto"
    assert cli.main(["fit", str(photos), *FIT, "--out", str(out), "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    recipe = metrics["recipe"]
    assert recipe["kept"] in ("probe", "fine_tuned") and recipe["reason"]
    assert recipe["holdout_images"] == 6 and recipe["augmented_views"] == 2  # 2 of 8 a class; flips
    assert recipe["probe_holdout_accuracy"] is not None
    assert recipe["fine_tune_holdout_curve"] and recipe["seconds"]["total"] > 0
    assert [(p["name"], p["seconds"] >= 0) for p in metrics["phases"]] == [
        ("probe", True),
        ("fine_tune", True),
    ]
    config = json.loads((out / "config.json").read_text())
    assert config["settings"]["strategy"] == "auto" and "--epochs" not in config["command"]
    err = _bad(capsys, "fit", photos, *FIT, "--epochs", "3", "--out", tmp_path / "x")
    assert "--epochs sets a fixed recipe: add --strategy fine_tune" in err
    assert "Received: --epochs 3" in err


def test_backbones_lists_the_registry(capsys):
    assert cli.main(["backbones", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    applications = [r for r in rows if "KerasHub" not in r["family"]]
    assert len(applications) == len([n for n in dir(keras.applications) if n[0].isupper()])
    # With the keras-hub extra, the registered KerasHub families' presets follow.
    hub = {r["name"]: r for r in rows if "KerasHub" in r["family"]}
    if hub:
        assert hub["keras_hub:dinov2_small"]["family"] == "dinov2 (KerasHub transformer)"
        assert hub["keras_hub:dinov2_small"]["parameters"] == 22_582_656
        assert any(r["family"] == "resnet (KerasHub cnn)" for r in hub.values())
    vgg = next(r for r in rows if r["name"] == "VGG16")
    assert (vgg["input_size"], vgg["preprocessing"], vgg["blocks"], vgg["parameters"]) == (
        224,
        "caffe",
        5,
        14_714_688,
    )


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
        capsys, "fit", photos, *FIT, *FIXED, "--epochs", "0"
    )


def test_an_existing_run_is_refused_unless_overwrite(photos, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "model.keras").write_text("an earlier run")
    (out / "metrics.json").write_text("{}")  # a run is recognised by its report
    assert "--overwrite" in _bad(capsys, "fit", photos, *FIT, "--out", out)
    assert (out / "model.keras").read_text() == "an earlier run"  # nothing lost
    assert (
        cli.main(
            ["fit", str(photos), *FIT, *FIXED, "--epochs", "1", "--out", str(out), "--overwrite"]
            + ["--quiet"]
        )
        == 0
    )
    assert (out / "metrics.json").is_file()
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]  # no leftovers


def test_bad_input_in_a_real_subprocess(tmp_path):
    result = command("fit", tmp_path / "missing", *FIT)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("keras-transfer fit: error: No image")
    assert "Traceback" not in result.stderr


# --- Never delete what it did not write; exit 2 for what the user can fix ------------


def _tree(root):
    return sorted(
        (str(p.relative_to(root)), p.read_bytes() if p.is_file() else None) for p in root.rglob("*")
    )


def test_overwrite_never_replaces_the_current_directory_or_the_data(
    run, tmp_path, monkeypatch, capsys
):
    # Run in a temporary directory: on the old code this emptied the cwd.
    photos = _folder(tmp_path / "work" / "photos", 4)
    (tmp_path / "work" / "notes.txt").write_text("mine")
    before = _tree(tmp_path)
    monkeypatch.chdir(tmp_path / "work")
    for out in (".", "..", "photos", "photos/red", tmp_path / "work"):
        err = _bad(
            capsys, "fit", "photos", *FIT, *FIXED, "--epochs", "1", "--out", out, "--overwrite"
        )
        assert "--out may not" in err and "Received: --out=" in err
    assert "input data" in _bad(capsys, "evaluate", run[0], photos, "--out", photos, "--overwrite")
    assert _tree(tmp_path) == before


def test_overwrite_replaces_only_a_run(photos, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep")
    (out / "metrics.json").write_text("{}")
    err = _bad(capsys, "fit", photos, *FIT, *FIXED, "--epochs", "1", "--out", out, "--overwrite")
    assert "is not a keras-transfer run" in err and "notes.txt" in err
    assert (out / "notes.txt").read_text() == "keep"


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


def test_predict_takes_a_plain_keras_model_and_upright_phone_photos(tmp_path, capsys):
    """A Sequential written by plain Keras, giving logits: class 0 scores red
    on top and blue below (the photo upright), class 1 red on the left and
    blue on the right (the photo as stored, lying on its side). The JPEG's
    EXIF turns it upright."""
    from tests.test_image_folder import _oriented_jpeg

    dense = keras.layers.Dense(2)
    model = keras.Sequential([keras.Input((8, 4, 3)), keras.layers.Flatten(), dense])
    kernel = np.zeros((8, 4, 3, 2), "float32")
    kernel[:4, :, 0, 0] = kernel[4:, :, 2, 0] = 1.0
    kernel[:, :2, 0, 1] = kernel[:, 2:, 2, 1] = 1.0
    dense.set_weights([kernel.reshape(-1, 2) / 255.0, np.zeros(2, "float32")])
    model.save(tmp_path / "plain.keras")
    _oriented_jpeg(tmp_path / "phone.jpg")
    assert (
        cli.main(
            [
                "predict",
                str(tmp_path / "plain.keras"),
                str(tmp_path / "phone.jpg"),
                "--json",
                "--top-k",
                "2",
            ]
        )
        == 0
    )
    top = json.loads(capsys.readouterr().out)[0]["top"]
    assert [t["class"] for t in top] == ["0", "1"]  # class indices as names; upright
    assert sum(t["probability"] for t in top) == pytest.approx(1.0, abs=1e-3)  # softmax


def test_extract_reads_a_split_root_by_class(photos, tmp_path, capsys):
    out = tmp_path / "features"
    assert cli.main(["extract", str(photos), *FIT, "--out", str(out), "--quiet"]) == 0
    for split, count in (("train", 24), ("val", 12)):
        feats = kt.Features.load(out / split)
        assert feats.class_names == sorted(COLORS) and len(feats) == count
        assert sorted(set(feats.labels.tolist())) == [0, 1, 2]


def test_the_command_line_never_changes_the_global_dtype_policy(photos, tmp_path):
    out = tmp_path / "bf16"
    argv = ["fit", str(photos), *FIT, *FIXED, "--epochs", "1", "--out", str(out), "--quiet"]
    assert cli.main([*argv, "--mixed-precision", "mixed_bfloat16"]) == 0
    assert keras.config.dtype_policy().name == "float32"
    model = keras.saving.load_model(out / "model.keras")
    assert model.get_layer("backbone").get_layer("block1_conv1").compute_dtype == "bfloat16"
