"""What the sub-commands share: parsing `--backbone-arg` and `--weights`,
checking sizes, and reading a run's model."""

import argparse

import keras
import pytest

from keras_transfer.commands import _shared
from keras_transfer.commands._shared import UsageError
from tests.conftest import runs_once_in

pytestmark = runs_once_in("jax")


def test_arguments_are_parsed_and_checked():
    assert _shared.parse_backbone_args(["alpha=0.35", "name=mine", "pooling=None"]) == {
        "alpha": 0.35,
        "name": "mine",
        "pooling": None,
    }
    with pytest.raises(UsageError, match="KEY=VALUE. Received: 'alpha'"):
        _shared.parse_backbone_args(["alpha"])
    assert _shared.parse_weights("None") is None and _shared.parse_weights("w.h5") == "w.h5"
    args = argparse.Namespace(epochs=0, image_size=32)
    with pytest.raises(UsageError, match="--epochs must be at least 1. Received: 0"):
        _shared.check_positive(args, "epochs")
    args.image_size = 10**5
    with pytest.raises(UsageError, match="--image-size must be at most"):
        _shared.check_positive(args, "image_size")


def test_load_model_reads_a_run_folder_or_says_what_it_needs(tmp_path):
    with pytest.raises(FileNotFoundError, match="No model at .*Received:"):
        _shared.load_model(tmp_path)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4)])
    model.save(tmp_path / "model.keras")
    (tmp_path / "config.json").write_text('{"class_names": ["a", "b", "c", "d"]}')
    loaded, config, path = _shared.load_model(tmp_path)
    assert _shared.class_count(loaded) == 4 and config["class_names"][0] == "a"
    assert path == tmp_path / "model.keras"
