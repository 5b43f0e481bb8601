"""`keras-transfer evaluate`, on the run the fit made."""

import json
import pathlib

import pytest

from keras_transfer.commands import cli
from tests.command_line import command
from tests.conftest import runs_once_in

pytestmark = runs_once_in("torch")


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


def test_the_report_shows_the_mistakes(run, tmp_path, capsys):
    """Photos filed under the wrong colours: every one is a mistake to show.
    report.html parses, its images decode, and its numbers are metrics.json's."""
    import base64
    import html.parser
    import io

    from PIL import Image

    from tests.command_line import COLORS, _folder

    out, _ = run
    names = list(COLORS)
    swapped = {name: COLORS[names[(i + 1) % 3]] for i, name in enumerate(names)}
    data = _folder(tmp_path / "swapped", per_class=3, classes=swapped)
    # In this process (the command's subprocess is tested above): a second
    # torch import cost the suite's slowest process 8 s.
    argv = ["evaluate", str(out), str(data), "--out", str(tmp_path / "eval"), "--top-losses", "4"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert len(metrics["top_losses"]) == 4
    losses = [row["loss"] for row in metrics["top_losses"]]
    assert losses == sorted(losses, reverse=True)
    assert all(row["true"] != row["predicted_class"] for row in metrics["top_losses"])
    # Named relative to the run and the data folders: no machine's paths.
    assert metrics["model"] == f"{out.name}/model.keras"
    assert metrics["data_dir"] == f"{tmp_path.name}/swapped"
    for row in metrics["top_losses"]:
        assert (data / row["path"]).is_file() and not pathlib.Path(row["path"]).is_absolute()
    assert str(tmp_path) not in (tmp_path / "eval" / "report.html").read_text()
    pairs = metrics["most_confused"]
    assert sum(count for _, _, count in pairs) == round((1 - metrics["accuracy"]) * 9)
    assert "confused:" in printed

    class Page(html.parser.HTMLParser):
        def __init__(self):
            super().__init__()
            self.images, self.ids, self.current = [], {}, None

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if tag == "img":
                self.images.append(attrs["src"])
            self.current = attrs.get("id")

        def handle_data(self, data):
            if self.current and data.strip():
                self.ids.setdefault(self.current, data.strip())

    page = Page()
    page.feed((tmp_path / "eval" / "report.html").read_text())
    assert len(page.images) >= 4  # confusion, reliability, the top losses, Grad-CAM
    assert 0 <= metrics["expected_calibration_error"] <= 1
    for src in page.images:
        assert src.startswith("data:image/png;base64,")  # nothing to fetch
        Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).verify()
    assert float(page.ids["accuracy"]) == pytest.approx(metrics["accuracy"], abs=1e-4)
    assert float(page.ids["balanced-accuracy"]) == pytest.approx(
        metrics["balanced_accuracy"], abs=1e-4
    )
    assert "balanced accuracy" in printed
    assert int(page.ids["images"]) == metrics["images"] == 9
    assert (tmp_path / "eval" / "gradcam.png").is_file()


def test_evaluate_counts_what_the_unknown_score_turns_away(tmp_path, capsys):
    """A colour model with an unknown score, on a folder of its classes in
    which two 'red' photos are yellow: the two are unknown, as predict
    answers them, and the rest are right."""
    import numpy as np
    from PIL import Image

    from tests.command_line import COLORS, _folder, scored_colour_model

    scored = scored_colour_model(tmp_path / "scored.keras")
    data = _folder(tmp_path / "data", per_class=4)
    for i in range(2):
        Image.fromarray(np.full((8, 8, 3), (200, 200, 30), "uint8")).save(
            data / "red" / f"yellow{i}.png"
        )
    argv = ["evaluate", str(tmp_path / "scored.keras"), str(data), "--out", str(tmp_path / "e")]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    unknown = json.loads((tmp_path / "e" / "metrics.json").read_text())["unknown"]
    assert unknown["threshold"] == pytest.approx(scored.unknown["threshold"])
    assert unknown["images_unknown"] == 2
    assert unknown["share_unknown"] == pytest.approx(2 / (4 * len(COLORS) + 2), abs=1e-4)
    assert unknown["accuracy_accepted"] == 1.0
    assert "unknown: 2 of 14 images below the threshold" in printed
    page = (tmp_path / "e" / "report.html").read_text()
    assert "<b id='images-unknown'>2</b>" in page
    assert "<b id='accuracy-accepted'>1.0000</b>" in page
