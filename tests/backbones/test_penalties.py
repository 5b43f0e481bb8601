"""L2-SP's two penalties as Keras regularizers, by their formulas."""

import keras
import numpy as np

from keras_transfer.backbones.penalties import HalfL2, StartingPoint
from tests.conftest import as_numpy


def test_the_penalties_are_their_formulas_and_round_trip_their_config():
    w = keras.ops.convert_to_tensor(np.array([[1.0, -2.0], [0.5, 3.0]], "float32"))
    start = np.array([[0.0, -1.0], [0.5, 1.0]], "float32")
    starting_point = StartingPoint(0.1, start)
    assert np.isclose(as_numpy(starting_point(w)), 0.1 / 2 * np.sum((as_numpy(w) - start) ** 2))
    assert np.isclose(as_numpy(HalfL2(0.01)(w)), 0.01 / 2 * np.sum(as_numpy(w) ** 2))
    copy = HalfL2.from_config(HalfL2(0.01).get_config())
    assert np.isclose(as_numpy(copy(w)), as_numpy(HalfL2(0.01)(w)))
    assert isinstance(keras.regularizers.get(keras.saving.serialize_keras_object(copy)), HalfL2)
