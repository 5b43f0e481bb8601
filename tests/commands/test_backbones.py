"""`keras-transfer backbones`, the registry's listing."""

import json

import keras

from keras_transfer.commands import cli
from tests.conftest import runs_once_in

pytestmark = runs_once_in("torch")


def test_backbones_lists_the_registry(capsys):
    assert cli.main(["backbones", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    applications = [r for r in rows if "KerasHub" not in r["family"]]
    assert len(applications) == len([n for n in dir(keras.applications) if n[0].isupper()])
    # With the keras-hub extra, the registered KerasHub families' presets follow.
    hub = {r["name"]: r for r in rows if "KerasHub" in r["family"]}
    if hub:
        assert hub["keras_hub:dinov2_small"]["family"] == "dinov2 (KerasHub transformer)"
        assert hub["keras_hub:dinov2_small"]["parameters"] == 22_582_656
        assert any(r["family"] == "resnet (KerasHub cnn)" for r in hub.values())
    vgg = next(r for r in rows if r["name"] == "VGG16")
    assert (vgg["input_size"], vgg["preprocessing"], vgg["blocks"], vgg["parameters"]) == (
        224,
        "caffe",
        5,
        14_714_688,
    )
