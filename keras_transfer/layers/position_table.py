"""Resampling a vision transformer's position table to a new grid of
patches, as timm's `layers/pos_embed.py` does."""

import numpy as np

__all__ = ["bicubic_matrix", "resample_position_table"]


def resample_position_table(table, grid, new_grid):
    """A position table's grid rows resized bicubically, as timm's
    `resample_abs_pos_embed` does (torch's bicubic, align_corners=False);
    its prefix rows (a class token's) as they are. In NumPy: the backends'
    own bicubic kernels differ."""
    prefix = table.shape[0] - grid[0] * grid[1]
    rows = np.reshape(table[prefix:], (*grid, table.shape[-1])).astype("float64")
    along_h, along_w = (bicubic_matrix(n, m) for n, m in zip(grid, new_grid))
    rows = np.einsum("ih,hwc,jw->ijc", along_h, rows, along_w)
    return np.concatenate([table[:prefix], rows.reshape(-1, table.shape[-1])]).astype(table.dtype)


def bicubic_matrix(size, new_size, a=-0.75):
    """(new_size, size): torch's bicubic weights (Keys, a=-0.75), with the
    edge rows repeated beyond the border."""
    x = (np.arange(new_size) + 0.5) * size / new_size - 0.5
    base = np.floor(x)
    matrix = np.zeros((new_size, size))
    for k in (-1, 0, 1, 2):
        d = np.abs(x - base - k)
        near = ((a + 2) * d - (a + 3)) * d * d + 1
        far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
        weight = np.where(d <= 1, near, np.where(d < 2, far, 0.0))
        np.add.at(matrix, (np.arange(new_size), np.clip(base + k, 0, size - 1).astype(int)), weight)
    return matrix
