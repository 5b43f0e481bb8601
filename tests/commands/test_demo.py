"""`keras-transfer demo`: the four strategies compared on digits."""

import json

from keras_transfer.commands import cli
from tests.conftest import (
    runs_once_in,
)


@runs_once_in("torch")  # eager: no compile per strategy, as under JAX
def test_demo_compares_the_four_strategies_on_digits(tmp_path, capsys):
    assert cli.main(["demo", "--epochs", "3", "--out", str(tmp_path / "demo"), "--quiet"]) == 0
    results = json.loads((tmp_path / "demo" / "results.json").read_text())["results"]
    assert list(results) == [
        "from scratch",
        "feature extraction + SVM",
        "ktr.fine_tune default",
        "gradual unfreezing",
    ]
    default = results["ktr.fine_tune default"]  # the bar says what was kept
    assert default["label"] == f"ktr.fine_tune default (kept: {default['kept']})"
    assert default["kept"] in ("probe", "fine-tuned")
    assert all(0.0 <= r["accuracy"] <= 1.0 and r["seconds"] > 0 for r in results.values())
    # The SVM on the pre-trained features beats chance (0.1) by far, even here.
    assert results["feature extraction + SVM"]["accuracy"] > 0.5
    assert (tmp_path / "demo" / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    assert "strategy" in capsys.readouterr().out
