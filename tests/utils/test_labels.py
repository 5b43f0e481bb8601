"""Labels: integer class indices, checked with the index of the first bad one."""

import pytest

import keras_transfer as kt
from tests.recipe_models import X, _model


def test_a_float_label_error_says_it_is_a_label():
    with pytest.raises(ValueError, match="The labels of `train` .*the label at index 1 is 0.5"):
        kt.fine_tune(_model(), (X[:2], [1, 0.5]), verbose=0)
