"""`gradual_unfreeze`: the head, then one more block from the top each
epoch, in one call."""

import numpy as np
import pytest

import keras_transfer as kt
from tests.conftest import pixels, tiny_backbone

X, Y = pixels(8), np.arange(8) % 2


def test_one_call_trains_the_head_then_a_block_an_epoch():
    model = kt.transfer(tiny_backbone(), 2, strategy="gradual", preprocessing="unit")
    history = kt.gradual_unfreeze(model, (X, Y), epochs=2, freeze_epochs=1, verbose=0)
    assert history.epoch == [0, 1, 2] and history.model is model
    assert [p["name"] for p in history.phases] == ["head", "gradual unfreezing"]
    rows = kt.trainable_summary(model, print_fn=None)
    # Two epochs after the head's: the top two blocks train, the stem does not.
    assert [row["trainable"] for row in rows] == ["no", "yes", "yes", "yes"]


def test_bad_input_says_what_was_received():
    model = kt.transfer(tiny_backbone(), 2, preprocessing="unit")
    with pytest.raises(ValueError, match="`epochs` must be an int >= 0. Received: epochs=-1"):
        kt.gradual_unfreeze(model, (X, Y), epochs=-1)
    with pytest.raises(ValueError, match="Nothing to train"):
        kt.gradual_unfreeze(model, (X, Y), epochs=0, freeze_epochs=0)
    with pytest.raises(ValueError, match="base_lr"):
        kt.gradual_unfreeze(model, (X, Y), base_lr=float("nan"))
    with pytest.raises(ValueError, match="integer class indices"):
        kt.gradual_unfreeze(model, (X, Y + 0.5))
