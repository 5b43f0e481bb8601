"""`keras-transfer evaluate`, on the run the fit made."""

import json

import pytest

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
