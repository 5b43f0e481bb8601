"""The run report's folder: only a run is replaced, and never through a link."""

import pytest

from keras_transfer.deploy import report
from tests.conftest import runs_once_in

ONCE = runs_once_in("torch")


@ONCE
def test_overwrite_names_the_files_no_run_writes(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    for name in ("metrics.json", "model.keras", "config.json", "curves.png", "confusion.png"):
        (out / name).write_text("{}")
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"it holds \['notes.txt'\], which no run writes"):
        report.output_dir(out, overwrite=True)


@ONCE
def test_overwrite_through_a_linked_out_leaves_nothing_behind(tmp_path):
    target = tmp_path / "real"
    target.mkdir()
    (target / "metrics.json").write_text("{}")
    link = tmp_path / "runlink"
    link.symlink_to(target, target_is_directory=True)
    with report.staging(link, overwrite=True) as stage:
        (stage / "metrics.json").write_text('{"new": 1}')
    assert sorted(p.name for p in tmp_path.iterdir()) == ["real", "runlink"]
    assert link.is_symlink() and (link / "metrics.json").read_text() == '{"new": 1}'


def test_balanced_accuracy_counts_each_class_alike():
    # 8 of one class and 2 of another: all of the large one right, none of
    # the small one. Accuracy hides it; the balanced figure does not.
    truth, predicted = [0] * 8 + [1] * 2, [0] * 10
    result = report.classification_report(truth, predicted, ["common", "rare", "absent"])
    assert result["accuracy"] == 0.8
    assert result["balanced_accuracy"] == 0.5  # (1.0 + 0.0) / 2: "absent" has no images
    assert result["per_class"]["rare"]["recall"] == 0.0
