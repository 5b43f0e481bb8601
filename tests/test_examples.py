"""Each example runs end to end, offline, on small settings."""

import subprocess
import sys

import pytest

from tests.conftest import (
    BACKEND, REAL_PHOTOS, ROOT, load_example, runs_once_in, subprocess_env,
)


def run_example(name, *args, timeout=300):
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *args],
        env=subprocess_env(BACKEND), capture_output=True, text=True, timeout=timeout,
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
    scratch, npz = (float(v) for v in out.split("from scratch ")[1].replace(
        ", initialised from .npz", "").split()[:2])
    assert 0.0 <= scratch <= 1.0 and npz > 0.5


@runs_once_in("torch")  # balances the TensorFlow process, which runs the TF-Hub tests
def test_training_recipes():
    out = run_example("training_recipes.py")
    assert "weights restored: True" in out
    assert "phases ['head', 'unfrozen']" in out
    fine_tuned, gradual = (float(v) for v in out.split("fine_tune ")[-1].replace(
        ", gradual unfreezing", "").split()[:2])
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
    assert example.main(["--image-size", "32", "--epochs", "1", "--freeze-epochs", "1",
                         "--handle", str(reusable)]) == 0
    out = capsys.readouterr().out
    assert "part      block" in out and "hub " in out  # the trainable summary
    assert "reloaded from hub_finetuned.keras: same predictions True" in out
    for phase in ("head", "unfrozen"):
        accuracy = float(out.split(f"after the {phase} phase: validation accuracy ")[1].split()[0])
        assert 0.0 <= accuracy <= 1.0, out
