"""The demo's task: disjoint scans with a noisy target, and real photos."""

import json

import numpy as np
import pytest

from keras_transfer.commands import cli
from keras_transfer.recipes import adaptive
from tests.conftest import (
    HYMENOPTERA,
    MOBILENET_V2_035_EXPORT,
    REAL_PHOTOS,
    runs_once_in,
)


@runs_once_in("torch")
def test_the_demo_task_is_disjoint_scans_with_a_noisy_target():
    from keras_transfer.commands import demo_table as demo

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
