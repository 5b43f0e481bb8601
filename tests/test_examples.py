"""Each example runs end to end, offline, on small settings."""

import subprocess
import sys

import pytest

from tests.conftest import (
    BACKEND,
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
def test_folder_to_deployment_predicts_with_the_exported_file(tmp_path, capsys):
    example = load_example("folder_to_deployment")  # in this process: no second torch import
    out = tmp_path / "export"
    assert example.main(["--image-size", "64", "--epochs", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    keras_accuracy, file_accuracy = (
        float(printed.split(f"{what} ")[1].split()[0].rstrip(",")) for what in ("keras", "file")
    )
    # The file alone, run by onnxruntime (torch exports ONNX), answers as Keras did.
    assert (out / "model.onnx").is_file() and (out / "labels.txt").read_text().split() == [
        "ants",
        "bees",
    ]
    assert abs(file_accuracy - keras_accuracy) <= 1 / 153, printed


@REAL_PHOTOS
@pytest.mark.shared_data
def test_feature_extraction_svm(tmp_path):
    out = run_example("feature_extraction_svm.py", "--image-size", "128", "--out", str(tmp_path))
    assert (tmp_path / "train.npz").is_file() and (tmp_path / "val.npz").is_file()
    assert float(out.split("SVM validation accuracy ")[1].split()[0]) > 0.7


@REAL_PHOTOS
@pytest.mark.shared_data
def test_rank_backbones_puts_imagenet_weights_first(tmp_path, capsys):
    example = load_example("rank_backbones")  # in this process: no second torch import
    assert example.main(["--image-size", "64", "--cache", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "best: imagenet weights" in out, out
    assert "(cached)" in out  # the second call read the pretrained features back


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
