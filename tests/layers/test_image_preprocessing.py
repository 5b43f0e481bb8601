"""`ImagePreprocessing`: keras.applications' `preprocess_input` as a layer.
(`tests/backbones/test_families.py` checks every mode against each family's own
`preprocess_input`.)"""

import numpy as np
import pytest

from keras_transfer.layers import ImagePreprocessing
from tests.conftest import as_numpy, pixels
from tests.layer_test_case import run_layer_test


@pytest.mark.parametrize("mode", ["caffe", "tf", "torch", "unit", "none"])
def test_layer_harness(mode, tmp_path):
    run_layer_test(
        ImagePreprocessing,
        {"mode": mode},
        pixels(2, size=4),
        (2, 4, 4, 3),
        tmp_path=tmp_path,
        expected_num_trainable_weights=0,
        atol=1e-4,
    )


def test_grayscale_is_repeated_and_a_bad_mode_is_refused():
    gray = np.full((1, 2, 2, 1), 255.0, "float32")
    assert as_numpy(ImagePreprocessing("unit")(gray)).tolist() == [[[[1.0] * 3] * 2] * 2]
    with pytest.raises(ValueError, match="`mode` must be one of .* Received: mode='bgr'"):
        ImagePreprocessing("bgr")
