"""`keras-transfer fit`, run for real on a tiny image folder."""

import json
import pathlib

import keras
import numpy as np
import pytest

from keras_transfer import strategies
from keras_transfer.commands import cli
from keras_transfer.heads import calibration, unknown
from keras_transfer.images import decoding as image_decoding
from keras_transfer.recipes import adaptive
from keras_transfer.recipes import fine_tuning as recipes
from tests.command_line import COLORS, FIT, FIXED, _bad, _folder
from tests.conftest import runs_once_in

pytestmark = runs_once_in("torch")


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
    skipped = [pathlib.Path(entry).name for entry in metrics["skipped_files"]]
    assert skipped == ["notes.txt (UnidentifiedImageError)"]
    assert "skipped 1 files" in result.stderr and "notes.txt" in result.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["class_names"] == sorted(COLORS)
    assert config["settings"]["backbone"] == "vgg16" and config["settings"]["epochs"] == 12
    assert config["command"][:2] == ["keras-transfer", "fit"] and "--lr" in config["command"]
    assert config["decoding"] == image_decoding.decoder()  # the pixels it was trained on
    assert "val accuracy" in result.stdout and "images/s" in result.stdout


@pytest.mark.parametrize(
    "strategy, phases",
    [("fine_tune", ["head", "unfrozen"]), ("gradual", ["head", "gradual unfreezing"])],
)
def test_fine_tune_and_gradual_strategies(photos, tmp_path, strategy, phases, monkeypatch):
    monkeypatch.setattr(calibration, "MIN_IMAGES", 2)  # the folder holds a few photos
    monkeypatch.setattr(unknown, "MIN_IMAGES", 2)
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
    # The temperature, fitted on the validation split, is in the saved model.
    fitted = metrics["calibration"]
    assert "skipped" not in fitted and fitted["temperature"] > 0
    assert set(fitted) >= {"ece_before", "ece_after", "nll_before", "nll_after"}
    saved = keras.saving.load_model(out / "model.keras")
    assert saved.get_layer("temperature_scaling").temperature == fitted["temperature"]
    config = json.loads((out / "config.json").read_text())
    assert config["calibration"]["fitted_on"].startswith("the validation split")
    # So is the unknown score, its threshold set on the validation split.
    threshold = metrics["unknown"]["threshold"]
    assert saved.get_layer("unknown_score").threshold == threshold == config["unknown"]["threshold"]
    assert metrics["unknown"]["held_out_images"] == metrics["val_images"]
    assert metrics["balance"]["used"] is False and "not needed" in metrics["balance"]["why"]
    # What was not given is the strategy's row's (the recipe's own defaults).
    settings = json.loads((out / "config.json").read_text())["settings"]
    row = strategies.get(strategy)
    assert (settings["freeze_epochs"], settings["lr"]) == (
        row.default("freeze_epochs"),
        row.default("base_lr"),
    )


def test_fit_runs_the_adaptive_recipe_by_default(photos, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(adaptive, "MAX_EPOCHS", 3)  # the record, not the accuracy, is tested
    # The probe and each fine-tuning epoch read the images: fit keeps them decoded.
    kept_decoded, run_recipe = [], recipes.adaptive_fine_tune

    def recipe(model, train, *args, **kwargs):
        kept_decoded.append(train.cached)
        return run_recipe(model, train, *args, **kwargs)

    monkeypatch.setattr(recipes, "adaptive_fine_tune", recipe)
    out = tmp_path / "auto"
    assert cli.main(["fit", str(photos), *FIT, "--out", str(out), "--quiet"]) == 0
    assert kept_decoded == [True]
    metrics = json.loads((out / "metrics.json").read_text())
    recipe = metrics["recipe"]
    assert recipe["kept"] in ("probe", "fine_tuned") and recipe["reason"]
    assert recipe["holdout_images"] == 6 and recipe["augmented_views"] == 2  # 2 of 8 a class; flips
    assert recipe["probe_holdout_accuracy"] is not None
    assert recipe["fine_tune_holdout_curve"] and recipe["seconds"]["total"] > 0
    retrained = recipe["kept"] == "fine_tuned"  # then trained again on every image
    assert [(p["name"], p["seconds"] >= 0) for p in metrics["phases"]] == [
        ("probe", True),
        ("fine_tune", True),
    ] + [("retrain", True)] * retrained
    config = json.loads((out / "config.json").read_text())
    assert config["settings"]["strategy"] == "auto" and "--epochs" not in config["command"]
    err = _bad(capsys, "fit", photos, *FIT, "--epochs", "3", "--out", tmp_path / "x")
    assert "--epochs sets a fixed recipe: add --strategy fine_tune" in err
    assert "Received: --epochs 3" in err
    # Equal classes: no weighting, and the record says why; feature
    # extraction has no balancing to turn off.
    assert metrics["balance"] == recipe["balance"] and not recipe["balance"]["used"]
    assert "not needed" in recipe["balance"]["why"]
    err = _bad(capsys, "fit", photos, *FIT, *FIXED, "--no-balance", "--out", tmp_path / "y")
    assert "Received: --no-balance with --strategy feature_extraction" in err


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


def test_the_command_line_never_changes_the_global_dtype_policy(photos, tmp_path):
    out = tmp_path / "bf16"
    argv = ["fit", str(photos), *FIT, *FIXED, "--epochs", "1", "--out", str(out), "--quiet"]
    assert cli.main([*argv, "--mixed-precision", "mixed_bfloat16"]) == 0
    assert keras.config.dtype_policy().name == "float32"
    model = keras.saving.load_model(out / "model.keras")
    assert model.get_layer("backbone").get_layer("block1_conv1").compute_dtype == "bfloat16"


def _tree(root):
    return sorted(
        (str(p.relative_to(root)), p.read_bytes() if p.is_file() else None) for p in root.rglob("*")
    )
