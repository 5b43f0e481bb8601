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

`patch()` mends both; `keras_transfer` calls it on import under the
TensorFlow backend. Every other strategy (one device, `MirroredStrategy`,
TPUs) takes Keras's own code unchanged: the patched functions hand those
back to the originals.
"""

import keras

_PATCHED = False


def patch():
    """Makes `fit`, `evaluate` and `predict` work with several workers.

    Idempotent, and a no-op on backends other than TensorFlow.

    Example:

    >>> keras_transfer.multi_worker.patch()
    """
    global _PATCHED
    if _PATCHED or keras.backend.backend() != "tensorflow":
        return
    import tensorflow as tf
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer

    multi_worker = trainer._collective_all_reduce_multi_worker
    symbolic_build = trainer.TensorFlowTrainer._maybe_symbolic_build
    reduce_per_replica = trainer.reduce_per_replica

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if strategy is None or iterator is None or not multi_worker(strategy):
            return symbolic_build(self, iterator=iterator, data_batch=data_batch)
        for _, _, batches in iterator:
            data_batch = next(batches)
            break
        data_batch = tree.map_structure(
            lambda v: (
                strategy.experimental_local_results(v)[0]
                if isinstance(v, tf.distribute.DistributedValues)
                else v
            ),
            data_batch,
        )
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    def _reduce_per_replica(values, strategy, reduction):
        if reduction not in ("auto", "mean") or not multi_worker(strategy):
            return reduce_per_replica(values, strategy, reduction)
        return tree.map_structure(
            lambda v: strategy.reduce("MEAN", v, axis=None if v.shape.rank == 0 else 0), values
        )

    trainer.TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build
    trainer.reduce_per_replica = _reduce_per_replica
    _PATCHED = True
