"""`keras-transfer extract`, on a split folder of photos."""

import keras_transfer as kt
from keras_transfer.commands import cli
from tests.command_line import COLORS, FIT
from tests.conftest import runs_once_in

pytestmark = runs_once_in("torch")


def test_extract_reads_a_split_root_by_class(photos, tmp_path, capsys):
    out = tmp_path / "features"
    assert cli.main(["extract", str(photos), *FIT, "--out", str(out), "--quiet"]) == 0
    for split, count in (("train", 24), ("val", 12)):
        feats = kt.Features.load(out / split)
        assert feats.class_names == sorted(COLORS) and len(feats) == count
        assert sorted(set(feats.labels.tolist())) == [0, 1, 2]
