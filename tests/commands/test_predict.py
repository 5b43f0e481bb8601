"""`keras-transfer predict`, on a run and on a plain Keras model."""

import json

import keras
import numpy as np
import pytest
from PIL import Image

from keras_transfer.commands import cli
from tests.command_line import COLORS, command, scored_colour_model
from tests.conftest import runs_once_in

pytestmark = runs_once_in("torch")


def test_predict_gives_the_class_the_model_gives_in_python(run, photos):
    out, _ = run
    image = photos / "val" / "green" / "0.png"
    result = command("predict", out / "model.keras", image, "--top-k", "2", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in result.stdout.splitlines()]  # JSON lines
    model = keras.saving.load_model(out / "model.keras")
    pixels = np.asarray(Image.open(image).convert("RGB").resize((32, 32), Image.BILINEAR))
    probabilities = np.asarray(model.predict(pixels[None].astype("float32"), verbose=0))[0]
    names = sorted(COLORS)
    assert [t["class"] for t in rows[0]["top"]] == [
        names[i] for i in np.argsort(-probabilities)[:2]
    ]
    assert rows[0]["top"][0]["probability"] == pytest.approx(probabilities.max(), abs=1e-3)
    assert rows[0]["top"][0]["class"] == "green"


def test_predict_takes_a_plain_keras_model_and_upright_phone_photos(tmp_path, capsys):
    """A Sequential written by plain Keras, giving logits: class 0 scores red
    on top and blue below (the photo upright), class 1 red on the left and
    blue on the right (the photo as stored, lying on its side). The JPEG's
    EXIF turns it upright."""
    from tests.images.test_folder import _oriented_jpeg

    dense = keras.layers.Dense(2)
    model = keras.Sequential([keras.Input((8, 4, 3)), keras.layers.Flatten(), dense])
    kernel = np.zeros((8, 4, 3, 2), "float32")
    kernel[:4, :, 0, 0] = kernel[4:, :, 2, 0] = 1.0
    kernel[:, :2, 0, 1] = kernel[:, 2:, 2, 1] = 1.0
    dense.set_weights([kernel.reshape(-1, 2) / 255.0, np.zeros(2, "float32")])
    model.save(tmp_path / "plain.keras")
    _oriented_jpeg(tmp_path / "phone.jpg")
    assert (
        cli.main(
            [
                "predict",
                str(tmp_path / "plain.keras"),
                str(tmp_path / "phone.jpg"),
                "--json",
                "--top-k",
                "2",
            ]
        )
        == 0
    )
    top = json.loads(capsys.readouterr().out.splitlines()[0])["top"]
    assert [t["class"] for t in top] == ["0", "1"]  # class indices as names; upright
    assert sum(t["probability"] for t in top) == pytest.approx(1.0, abs=1e-3)  # softmax


def test_predict_answers_unknown_below_the_models_threshold(tmp_path, capsys):
    """A model scoring mean colours, given an unknown score on red, green
    and blue images: a yellow photo is unknown, a red one is red; with
    --no-unknown the yellow one gets a class."""
    scored = scored_colour_model(tmp_path / "scored.keras")
    for name, color in [("red", (200, 30, 30)), ("yellow", (200, 200, 30))]:
        Image.fromarray(np.full((8, 8, 3), color, "uint8")).save(tmp_path / f"{name}.png")
    argv = ["predict", str(tmp_path / "scored.keras"), str(tmp_path / "red.png")]
    assert cli.main([*argv, str(tmp_path / "yellow.png"), "--json"]) == 0
    red, yellow = map(json.loads, capsys.readouterr().out.splitlines())
    assert red["unknown"] is False and red["top"][0]["class"] == "2"  # red, third in COLORS
    assert yellow["unknown"] is True
    assert red["unknown_score"] > scored.unknown["threshold"] > yellow["unknown_score"]
    assert cli.main([*argv[:2], str(tmp_path / "yellow.png")]) == 0
    assert capsys.readouterr().out.splitlines()[1].endswith("unknown")
    assert cli.main([*argv[:2], str(tmp_path / "yellow.png"), "--json", "--no-unknown"]) == 0
    assert "unknown" not in json.loads(capsys.readouterr().out)
