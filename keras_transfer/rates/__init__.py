"""What trains, and how fast.

- `freezing`: `freeze`, `unfreeze` by blocks, the BatchNorm policy,
  `trainable_summary`.
- `rate_multipliers`: per-block multipliers (fastai's discriminative
  rates, layer decay for transformers).
- `optimizers`: `BlockwiseLR`, which applies them to any Keras optimizer.
- `regularizers`: L2-SP, toward the pretrained weights.
- `precision`: the mixed-precision policy a device wants.
"""

__all__ = []
