"""`keras-transfer rank`: backbones ranked on a folder of photos."""

import json

from keras_transfer.commands import cli
from keras_transfer.commands.rank import parse_candidate
from tests.command_line import _bad
from tests.conftest import runs_once_in

pytestmark = runs_once_in("torch")
SMALL = ["--image-size", "32", "--batch-size", "8", "--quiet"]


def test_rank_prints_and_writes_the_table(photos, tmp_path, capsys):
    out = tmp_path / "rank"
    argv = ["rank", str(photos), "--backbone", "vgg16:weights=none,name=plain"]
    argv += ["--backbone", "vgg16:weights=none,name=other", "--no-cache", "--out", str(out)]
    assert cli.main([*argv, *SMALL]) == 0
    printed = capsys.readouterr().out
    assert "plain" in printed and "(ranked by logme, higher is better)" in printed
    table = json.loads((out / "rank.json").read_text())
    assert table["by"] == "logme" and sorted(r["rank"] for r in table["rows"]) == [1, 2]
    assert (out / "rank.png").stat().st_size > 0
    # The folder is a run of keras-transfer's: --overwrite may replace it.
    assert cli.main([*argv, *SMALL]) == 2
    assert cli.main([*argv, *SMALL, "--overwrite"]) == 0


def test_a_candidate_carries_its_weights_and_arguments(photos, tmp_path, capsys):
    assert parse_candidate("mobilenet_v2:alpha=0.35,weights=w.h5,name=small") == {
        "backbone": "mobilenet_v2",
        "weights": "w.h5",
        "name": "small",
        "backbone_kwargs": {"alpha": 0.35},
    }
    assert parse_candidate("vgg16:weights=none") == {"backbone": "vgg16", "weights": None}
    err = _bad(capsys, "rank", photos, "--backbone", "vgg16:alpha", "--out", tmp_path / "r")
    assert "NAME:KEY=VALUE" in err and "Received: 'vgg16:alpha'" in err
