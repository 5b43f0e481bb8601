"""Callbacks for transfer learning: gradual unfreezing (ULMFiT-style)."""

import keras

from keras_transfer.backbones.backbone_model import blocks_of
from keras_transfer.rates import freezing
from keras_transfer.rates.optimizers import BlockwiseLR, set_multipliers
from keras_transfer.rates.rate_multipliers import block_multipliers
from keras_transfer.utils import _compat
from keras_transfer.utils._options import check_bn

__all__ = ["GradualUnfreezing"]


class GradualUnfreezing(keras.callbacks.Callback):
    """Unfreezes the backbone from the top block down, during `fit`.

    Before `start_epoch` only the head trains; then every `every` epochs the
    next `blocks_per_step` blocks below join. Each change takes effect at the
    next step, with no recompile: the optimizer is rebuilt for the new
    trainable set with the state of every variable already training kept
    (Adam's moments, the iteration count, the learning rate), and frozen
    layers get no gradients.

    The trainable set is a function of the epoch, so a fit resumed through
    `keras.callbacks.BackupAndRestore` or from a checkpoint with
    `initial_epoch` continues where it stopped, optimizer state included.
    The model's optimizer is wrapped in `ktr.optimizers.BlockwiseLR` (its
    `learning_rate` stays readable and settable, so `ReduceLROnPlateau` and
    `LearningRateScheduler` work alongside).

    Example:

    >>> unfreezing = keras_transfer.callbacks.GradualUnfreezing(start_epoch=1, every=2)
    >>> [unfreezing.blocks_at(epoch) for epoch in range(6)]
    [0, 1, 1, 2, 2, 3]

    ```python
    model = ktr.transfer("efficientnetb0", 5)  # frozen backbone
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(train, epochs=8, callbacks=[unfreezing])
    ```

    Args:
        start_epoch: first epoch (0-based) with a block unfrozen.
        every: epochs between steps.
        blocks_per_step: blocks unfrozen at each step.
        max_blocks: stop after this many blocks (None: all of them).
        bn: BatchNorm policy of unfrozen blocks: `"inference"` (statistics
            and affine frozen), `"train_affine"` or `"train"`.
        lr_factor: if set, discriminative learning rates: the block `k`
            steps below the head trains at `lr_factor**k` times the rate.
        blocks: for a model whose blocks cannot be found (not built by
            `transfer()`, not a keras.applications model): the blocks, stem
            to top, each a layer name or a list of layer names. Layers in no
            block (the head) always train.
        verbose: 1 prints each step.
    """

    def __init__(
        self,
        start_epoch=1,
        every=1,
        blocks_per_step=1,
        max_blocks=None,
        bn="inference",
        lr_factor=None,
        blocks=None,
        verbose=1,
    ):
        super().__init__()
        for name, value, low in (
            ("start_epoch", start_epoch, 0),
            ("every", every, 1),
            ("blocks_per_step", blocks_per_step, 1),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"`{name}` must be an int >= {low}. Received: {name}={value!r}")
        if max_blocks is not None and (not isinstance(max_blocks, int) or max_blocks < 0):
            raise ValueError(
                f"`max_blocks` must be None or an int >= 0. Received: max_blocks={max_blocks!r}"
            )
        check_bn(bn)
        if lr_factor is not None and not (isinstance(lr_factor, (int, float)) and lr_factor > 0):
            raise ValueError(
                f"`lr_factor` must be None or a positive number. Received: lr_factor={lr_factor!r}"
            )
        self.start_epoch = start_epoch
        self.every = every
        self.blocks_per_step = blocks_per_step
        self.max_blocks = max_blocks
        self.bn = bn
        self.lr_factor = lr_factor
        self.blocks = (
            None
            if blocks is None
            else [[block] if isinstance(block, str) else list(block) for block in blocks]
        )
        self.verbose = verbose
        self._current = None

    def blocks_at(self, epoch):
        """How many blocks (per backbone) train in `epoch` (0-based)."""
        if epoch < self.start_epoch:
            return 0
        count = self.blocks_per_step * (1 + (epoch - self.start_epoch) // self.every)
        return count if self.max_blocks is None else min(count, self.max_blocks)

    def set_model(self, model):
        super().set_model(model)
        self._current = None
        if self.blocks is None:
            # A model without blocks fails here, clearly.
            owners = [id(owner) for owner, _, _ in blocks_of(model)]
            self._total = max(owners.count(owner) for owner in owners)
        else:
            self._total = len(self._groups())
        # Wrap the optimizer now: fit calls set_model before
        # BackupAndRestore loads a backup, whose optimizer state may be for
        # more blocks than train yet; BlockwiseLR keeps it until they do.
        optimizer = getattr(model, "optimizer", None)
        inner = getattr(optimizer, "inner_optimizer", optimizer)
        if (
            getattr(model, "compiled", False)
            and not isinstance(optimizer, BlockwiseLR)
            and not isinstance(inner, BlockwiseLR)
        ):
            set_multipliers(model, {})

    def on_epoch_begin(self, epoch, logs=None):
        resumed = self._current is None and epoch > 0
        optimizer = self.model.optimizer
        if resumed and getattr(optimizer, "_deferred_state", None) is not None:
            # The backup was written at the end of the previous epoch.
            self._apply(min(self.blocks_at(epoch - 1), self._total))
        target = min(self.blocks_at(epoch), self._total)
        if target != self._current:
            self._apply(target)
            if self.verbose and epoch > 0:
                _compat.print_msg(
                    f"\nGradualUnfreezing: epoch {epoch + 1}: {target} block(s) "
                    "of the backbone train."
                )

    def _apply(self, count):
        if self.blocks is None:
            freezing.unfreeze(self.model, blocks=count, bn=self.bn)
            groups = None
        else:
            groups = self._groups()
            top = groups[len(groups) - count :] if count else []
            in_groups = {layer.name for group in groups for layer in group}
            head = [layer for layer in self.model.layers if layer.name not in in_groups]
            freezing.unfreeze(self.model, blocks=head + [l for g in top for l in g], bn=self.bn)
        if self.lr_factor is not None:
            set_multipliers(
                self.model,
                block_multipliers(self.model, factor=self.lr_factor, groups=groups),
            )
        self._current = count

    def _groups(self):
        try:
            return [[self.model.get_layer(name) for name in block] for block in self.blocks]
        except ValueError as error:
            raise ValueError(
                f"`blocks` names a layer the model does not have ({error}). "
                f"Received: blocks={self.blocks}"
            ) from None

    def get_config(self):
        return {
            "start_epoch": self.start_epoch,
            "every": self.every,
            "blocks_per_step": self.blocks_per_step,
            "max_blocks": self.max_blocks,
            "bn": self.bn,
            "lr_factor": self.lr_factor,
            "blocks": self.blocks,
            "verbose": self.verbose,
        }
