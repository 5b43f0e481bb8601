import pytest

import keras_transfer as kt
from tests.conftest import tiny_backbone
from tests.recipe_models import X, Y, _model


def test_fine_tune_bad_input():
    with pytest.raises(ValueError, match="Received: epochs=0"):
        kt.fine_tune(_model(), (X, Y), epochs=0)
    with pytest.raises(ValueError, match="Received: schedule='cosine'"):
        kt.fine_tune(_model(), (X, Y), schedule="cosine")
    with pytest.raises(ValueError, match="Pass the layers to unfreeze explicitly"):
        kt.fine_tune(tiny_backbone(), (X, Y))
    with pytest.raises(ValueError, match="`train` must be a tuple.*Received: a list of 2"):
        kt.fine_tune(_model(), [X, Y])
    with pytest.raises(ValueError, match="`base_lr` must be a number. Received: base_lr='1e-3'"):
        kt.fine_tune(_model(), (X, Y), base_lr="1e-3")
    with pytest.raises(ValueError, match=r"`train` must be class indices in \[0, 2\)"):
        kt.fine_tune(_model(), (X, Y + 1))
    with pytest.raises(ValueError, match=r"Received: the label at index 0 is 0.5"):
        kt.fine_tune(_model(), (X, Y + 0.5))
