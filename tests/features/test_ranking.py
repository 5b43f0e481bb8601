"""`ktr.rank`: backbones (or layers) ranked by transferability scores of
their frozen features, through the feature store."""

import os

import keras
import numpy as np
import pytest

import keras_transfer as ktr
from tests.conftest import pixels

Y = np.arange(40) % 2
X = pixels(40, size=16, seed=1) * 0.8
X[Y == 1, ..., 0] += 50.0  # the class is in the red channel only


def _backbone(channel, name):
    """Two convolutions that see one colour channel only."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, name="conv_a")(inputs)
    x = keras.layers.Conv2D(8, 3, name="conv_b")(keras.layers.ReLU()(x))
    model = keras.Model(inputs, keras.layers.ReLU()(x), name=name)
    kernel, bias = model.get_layer("conv_a").get_weights()
    mask = np.zeros(3)
    mask[channel] = 1.0
    model.get_layer("conv_a").set_weights([kernel * mask[None, None, :, None], bias])
    return model


def test_features_that_separate_the_classes_rank_above_noise(tmp_path):
    candidates = [
        {"backbone": _backbone(1, "sees_green"), "weights": None},  # green holds no class
        {"backbone": _backbone(0, "sees_red"), "weights": None},
        {"backbone": "no_such_net", "weights": None},
    ]
    ranking = ktr.rank(candidates, (X, Y), cache=tmp_path)
    assert [row["name"] for row in ranking.rows] == ["sees_red", "sees_green", "no_such_net"]
    assert ranking.best == "sees_red" and ranking.by == "logme"
    red, green, failed = ranking.rows
    assert (red["rank"], green["rank"], failed["rank"]) == (1, 2, None)
    assert red["probe"] > green["probe"] and red["h_score"] > green["h_score"]
    assert red["width"] == 8 and red["parameters"] == green["parameters"] > 0
    assert "Unknown backbone name" in failed["error"] and failed["logme"] is None
    assert "no_such_net: ValueError" in str(ranking) and "sees_red" in str(ranking)
    assert "16x16" in str(ranking)  # the input size each candidate ran at
    assert ranking.to_dict()["rows"][0]["name"] == "sees_red"
    assert not any(row["cached"] for row in ranking.rows)

    # Asked again, the stores answer: the same scores, no extraction.
    again = ktr.rank(candidates, (X, Y), cache=tmp_path)
    assert [row["cached"] for row in again.rows] == [True, True, False]
    for first, second in zip(ranking.rows[:2], again.rows[:2]):
        assert second["logme"] == first["logme"] and second["probe"] == first["probe"]
    # Other data under the same candidates is extracted afresh, not answered.
    other = ktr.rank(candidates[:2], (X[:30], Y[:30]), cache=tmp_path)
    assert not any(row["cached"] for row in other.rows)


def test_layers_of_one_backbone_are_ranked():
    ranking = ktr.rank(
        {"backbone": _backbone(0, "net"), "weights": None},
        (X, Y),
        layers=["conv_a", "conv_b", ["conv_a", "conv_b"]],
        scores=["probe"],
        by="h_score",
        cache=None,
    )
    widths = {row["name"]: row["width"] for row in ranking.rows}
    # A list of taps is one row of their pooled features side by side.
    assert widths == {"net:conv_a": 8, "net:conv_b": 8, "net:['conv_a', 'conv_b']": 16}
    assert ranking.scores == ("h_score", "probe") and all(
        row["error"] is None for row in ranking.rows
    )


def test_bad_input_says_what_was_received():
    with pytest.raises(ValueError, match="`data` cannot rank backbones: .*two classes"):
        ktr.rank(
            {"backbone": _backbone(0, "a"), "weights": None}, (X, np.zeros(40, "int64")), cache=None
        )
    with pytest.raises(ValueError, match="Received: 'speed'"):
        ktr.rank(["mobilenet"], (X, Y), by="speed")
    with pytest.raises(ValueError, match="Received: a candidate with keys"):
        ktr.rank([{"weights": None}], (X, Y))
    with pytest.raises(ValueError, match="its own name"):
        ktr.rank([_backbone(0, "a"), _backbone(1, "a")], (X, Y), cache=None)
    with pytest.raises(ValueError, match="layers of one backbone"):
        ktr.rank([_backbone(0, "a"), _backbone(1, "b")], (X, Y), layers=["conv_a"])


def test_a_warm_store_answers_without_building_the_backbone(tmp_path, monkeypatch):
    # A registered name with a weights file: the file's stat and the data's
    # fingerprint prove the store's answer, so nothing is built.
    weights = tmp_path / "mobilenet.weights.h5"
    keras.applications.MobileNet(
        input_shape=(32, 32, 3), alpha=0.25, include_top=False, weights=None
    ).save_weights(weights)
    candidate = {
        "backbone": "mobilenet",
        "backbone_kwargs": {"alpha": 0.25},
        "weights": str(weights),
        "input_shape": (32, 32, 3),
    }
    images = pixels(40, seed=2)
    images[Y == 1, ..., 0] *= 0.2
    cold = ktr.rank(candidate, (images, Y), cache=tmp_path / "stores", scores=["probe"])
    assert cold.rows[0]["error"] is None and not cold.rows[0]["cached"]

    def no_build(*args, **kwargs):
        raise AssertionError("the backbone was built")

    monkeypatch.setattr(ktr.factory, "build_feature_model", no_build)
    warm = ktr.rank(candidate, (images, Y), cache=tmp_path / "stores", scores=["probe"])
    assert warm.rows[0]["cached"] and warm.rows[0]["logme"] == cold.rows[0]["logme"]
    assert warm.rows[0]["parameters"] == cold.rows[0]["parameters"]
    # Other weights (the file rewritten), or other data: built again.
    os.utime(weights, ns=(1, 1))
    assert (
        "the backbone was built"
        in ktr.rank(candidate, (images, Y), cache=tmp_path / "stores").rows[0]["error"]
    )
    assert (
        "built"
        in ktr.rank(candidate, (images[:30], Y[:30]), cache=tmp_path / "stores").rows[0]["error"]
    )
