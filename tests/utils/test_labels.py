"""Labels: integer class indices, checked with the index of the first bad one."""

import pytest

import keras_transfer as kt
from tests.recipe_models import X, _model


def test_a_float_label_error_says_it_is_a_label():
    with pytest.raises(ValueError, match="The labels of `train` .*the label at index 1 is 0.5"):
        kt.fine_tune(_model(), (X[:2], [1, 0.5]), verbose=0)


def test_balancing_weighs_each_class_alike_past_the_imbalance_ratio():
    from keras_transfer.utils.labels import IMBALANCE, balancing

    weights, why = balancing([0] * 9 + [1] * 3, 3)  # 3 to 1, and a class absent
    assert weights.tolist() == [12 / 18, 12 / 6, 0.0] and IMBALANCE == 3.0
    assert why.startswith("balanced: the largest class has 3.0 times")
    # Each present class then weighs the same in all: the mean weight stays 1.
    assert weights[0] * 9 == weights[1] * 3 and weights[0] * 9 + weights[1] * 3 == 12
    assert balancing([0] * 5 + [1] * 2, 2) == (None, balancing([0] * 5 + [1] * 2, 2)[1])
    assert "under 3.0" in balancing([0] * 5 + [1] * 2, 2)[1]
    assert balancing([0] * 9 + [1] * 3, 2, False) == (None, "off: balance=False")
    assert balancing([0] * 2 + [1] * 2, 2, True)[0].tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="Received: balance='on'"):
        balancing([0, 1], 2, "on")
