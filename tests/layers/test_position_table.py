"""Resampling a position table as timm does (torch's bicubic,
align_corners=False); the prefix rows kept as they are."""

import numpy as np

from keras_transfer.layers.position_table import bicubic_matrix, resample_position_table
from tests.conftest import runs_once_in


@runs_once_in("torch")  # NumPy, checked against torch's own bicubic
def test_a_table_is_resampled_as_torch_resamples_the_grid():
    import torch

    rng = np.random.default_rng(0)
    table = rng.normal(size=(1 + 4 * 3, 5)).astype("float32")  # a class row, a 4x3 grid
    new = resample_position_table(table, (4, 3), (6, 5))
    grid = torch.tensor(table[1:]).reshape(1, 4, 3, 5).permute(0, 3, 1, 2)
    expected = torch.nn.functional.interpolate(grid, (6, 5), mode="bicubic", align_corners=False)
    assert new.shape == (1 + 30, 5) and new.dtype == table.dtype
    np.testing.assert_array_equal(new[0], table[0])
    np.testing.assert_allclose(
        new[1:], expected.permute(0, 2, 3, 1).reshape(30, 5).numpy(), rtol=1e-5, atol=1e-6
    )


def test_the_bicubic_weights_sum_to_one_and_keep_a_same_size_grid():
    matrix = bicubic_matrix(4, 7)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(bicubic_matrix(5, 5), np.eye(5), atol=1e-12)
