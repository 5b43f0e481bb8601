"""Each example runs end to end, offline, on small settings."""

import json
import subprocess
import sys

import numpy as np
import pytest

from keras_transfer import adaptive, cli
from tests.conftest import (
    BACKEND,
    HYMENOPTERA,
    MOBILENET_V2_035_EXPORT,
    REAL_PHOTOS,
    ROOT,
    load_example,
    runs_once_in,
    subprocess_env,
)


def run_example(name, *args, timeout=300):
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *args],
        env=subprocess_env(BACKEND),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


@REAL_PHOTOS
@pytest.mark.shared_data
def test_quickstart_trains_on_real_photos():
    out = run_example("quickstart.py", "--epochs", "2", "--image-size", "96")
    accuracy = float(out.split("validation accuracy ")[1].split()[0])
    assert accuracy > 0.6, out  # ImageNet features beat chance (0.54) on ants/bees


@REAL_PHOTOS
@pytest.mark.shared_data
def test_feature_extraction_svm(tmp_path):
    out = run_example("feature_extraction_svm.py", "--image-size", "128", "--out", str(tmp_path))
    assert (tmp_path / "train.npz").is_file() and (tmp_path / "val.npz").is_file()
    assert float(out.split("SVM validation accuracy ")[1].split()[0]) > 0.7


@runs_once_in("jax")
def test_init_from_npz():
    out = run_example("init_from_npz.py", "--epochs", "15")
    assert "initialised from .npz" in out and "Transferred" in out
    scratch, npz = (
        float(v)
        for v in out.split("from scratch ")[1].replace(", initialised from .npz", "").split()[:2]
    )
    # Chance is 0.2 (five digits); 80 labelled images are too few to train
    # from scratch in 15 epochs, and the transferred features help clearly.
    assert 0.0 <= scratch <= 1.0 and npz > 0.4 and npz > scratch + 0.1, out


@runs_once_in("tensorflow")  # balances the torch process, which runs the CLI tests
def test_training_recipes():
    out = run_example("training_recipes.py")
    assert "weights restored: True" in out
    assert "phases ['head', 'unfrozen']" in out
    fine_tuned, gradual = (
        float(v)
        for v in out.split("fine_tune ")[-1].replace(", gradual unfreezing", "").split()[:2]
    )
    assert fine_tuned > 0.5 and gradual > 0.5, out  # chance is 0.2 (five digits)


@pytest.mark.tensorflow_only
@pytest.mark.shared_data
def test_tfhub_finetune(reusable, capsys):
    # The whole script, in this process, on the small Hub-style SavedModel
    # the Hub tests build (--handle): fine-tuning the exported MobileNetV2
    # costs 100 s of the CI budget. Its export function runs in the
    # hub_mobilenet_v2 fixture, and test_hub checks that SavedModel's
    # features on real photos.
    example = load_example("tfhub_finetune")
    assert (
        example.main(
            [
                "--image-size",
                "32",
                "--epochs",
                "1",
                "--freeze-epochs",
                "1",
                "--handle",
                str(reusable),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "part      block" in out and "hub " in out  # the trainable summary
    assert "reloaded from hub_finetuned.keras: same predictions True" in out
    for phase in ("head", "unfrozen"):
        accuracy = float(out.split(f"after the {phase} phase: validation accuracy ")[1].split()[0])
        assert 0.0 <= accuracy <= 1.0, out


@REAL_PHOTOS
@pytest.mark.shared_data
def test_fine_tune_applications(capsys):
    example = load_example("fine_tune_applications")
    assert example.main(["--epochs", "1", "--fine-tune-epochs", "1", "--image-size", "64"]) == 0
    out = capsys.readouterr().out
    assert "same predictions True" in out
    assert 0.0 <= float(out.split("fine-tuned validation accuracy ")[1].split(";")[0]) <= 1.0


@REAL_PHOTOS
@pytest.mark.shared_data
def test_multi_source_fusion_of_the_two_real_backbones(capsys):
    example = load_example("multi_source_fusion")
    assert example.main([]) == 0  # 224 px: the acceptance figures
    out = capsys.readouterr().out
    scores = {
        line.split()[0]: float(line.split()[-1])
        for line in out.splitlines()
        if "validation accuracy" in line
    }
    print("hymenoptera logistic probe:", scores)
    v2, v1 = (k for k in scores if k != "fused")
    assert scores[v2] >= 0.88 and scores[v1] >= 0.80
    # Whether fusion beats the better source is reported, not assumed.
    assert scores["fused"] >= min(scores.values()) and "the better source" in out


@runs_once_in("jax")
def test_transfer_matrix_coral_adapts_to_the_shifted_domain(capsys):
    assert load_example("transfer_matrix_coral").main(["--epochs", "15"]) == 0
    out = capsys.readouterr().out
    plain, coral = (
        float(v)
        for v in out.split("no adaptation ")[1].replace(", TransferMatrix (CORAL)", "").split()
    )
    assert coral > plain + 0.2, out  # chance is 0.1


@runs_once_in("torch")  # eager: no compile per strategy, as under JAX
def test_demo_compares_the_four_strategies_on_digits(tmp_path, capsys):
    assert cli.main(["demo", "--epochs", "3", "--out", str(tmp_path / "demo"), "--quiet"]) == 0
    results = json.loads((tmp_path / "demo" / "results.json").read_text())["results"]
    assert list(results) == [
        "from scratch",
        "feature extraction + SVM",
        "fine-tuning",
        "gradual unfreezing",
    ]
    assert all(0.0 <= r["accuracy"] <= 1.0 and r["seconds"] > 0 for r in results.values())
    # The SVM on the pre-trained features beats chance (0.1) by far, even here.
    assert results["feature extraction + SVM"]["accuracy"] > 0.5
    assert (tmp_path / "demo" / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    assert "strategy" in capsys.readouterr().out


@runs_once_in("torch")
def test_the_demo_task_is_disjoint_scans_with_a_noisy_target():
    from keras_transfer import demo

    task = demo.digits_task(shots=3, seed=1, say=lambda *a: None)
    (x, y), (x_test, y_test) = task.train, task.test
    assert x.shape == (30, 8, 8, 3) and np.array_equal(np.bincount(y), [3] * 10)
    # The target is the half of the 1,797 scans the source never saw, less the shots.
    assert len(x_test) == 1797 - 1797 // 2 - 30 and set(y_test) == set(range(10))
    assert not any(np.array_equal(a, b) for a in x for b in x_test)
    # Noisy: clean scans take 17 grey levels, these take many more.
    assert len(np.unique(x)) > 17 * 10


@REAL_PHOTOS
@pytest.mark.shared_data
def test_demo_on_real_photos(tmp_path, monkeypatch):
    monkeypatch.setattr(adaptive, "MAX_EPOCHS", 3)  # --epochs 1 is for the fixed strategies
    assert (
        cli.main(
            [
                "demo",
                "--data",
                str(HYMENOPTERA),
                "--weights",
                str(MOBILENET_V2_035_EXPORT),
                "--backbone-arg",
                "alpha=0.35",
                "--image-size",
                "32",
                "--epochs",
                "1",
                "--out",
                str(tmp_path / "demo"),
                "--quiet",
            ]
        )
        == 0
    )
    results = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert results["task"] == "hymenoptera_data (mobilenet_v2)" and len(results["results"]) == 4
