"""`model.fit` under `tf.distribute.MultiWorkerMirroredStrategy` on Keras 3.

Keras 3's TensorFlow trainer fails on the first step with more than one
worker (keras-team/keras#20585, open):

- `_maybe_symbolic_build` reduces a whole `(x, y)` batch with
  `strategy.reduce`, which takes one value: "Attempt to convert a value
  (PerReplica...)". It needs only the batch's shapes and dtypes, which the
  local replica's part gives.
- `reduce_per_replica` averages the step's scalar logs with
  `strategy.reduce("MEAN", v, axis=0)`: "Invalid reduction dimension 0 for
  input with 0 dimensions". A scalar is averaged across workers with
  `axis=None`.

Keras also hands a `PyDataset` to `experimental_distribute_dataset`,
whose auto-sharding keeps 1/n of each worker's batch; a `ktr.ImageStream`
already holds only its worker's files (`shard`), so the patch feeds it
whole to its worker.

`patch()` mends these. Importing `keras_transfer` changes nothing: the
patch is applied by `transfer()`, `extract_features`, `fine_tune` and
`ktr.heads.fit_head` when they run under a multi-worker distribution
strategy (`patch_if_needed`), or by calling `patch()` before `fit`. Every
other distribution strategy (one device, `MirroredStrategy`, TPUs) takes Keras's own code
unchanged: the patched functions hand those back to the originals.
"""

import keras

from keras_transfer.utils import _compat

__all__ = ["patch", "patch_if_needed"]

_PATCHED = False


def patch():
    """Makes `fit`, `evaluate` and `predict` work with several workers.

    Idempotent, and a no-op on backends other than TensorFlow, or on a Keras
    whose trainer no longer has the functions it mends. Returns whether the
    trainer is patched.

    Example:

    >>> keras_transfer.multi_worker.patch() in (True, False)
    True
    """
    global _PATCHED
    if not _PATCHED and keras.backend.backend() == "tensorflow":
        _PATCHED = _compat.patch_multi_worker_trainer()
    return _PATCHED


def patch_if_needed():
    """`patch()` when a multi-worker distribution strategy is in scope;
    otherwise nothing."""
    if keras.backend.backend() != "tensorflow" or _PATCHED:
        return
    import tensorflow as tf

    if tf.distribute.has_strategy() and isinstance(
        tf.distribute.get_strategy(),
        (
            tf.distribute.MultiWorkerMirroredStrategy,
            tf.distribute.experimental.MultiWorkerMirroredStrategy,
        ),
    ):
        patch()
