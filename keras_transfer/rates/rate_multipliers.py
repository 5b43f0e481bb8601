"""Per-block learning-rate multipliers, apart from what trains: fastai's
geometric spread `lr_range` and the layer-wise decay `lr_decay` of ViT
recipes, as timm keeps layer decay in `optim/_param_groups.py`.
`ktr.optimizers.BlockwiseLR` consumes them."""

import math

from keras_transfer.backbones.backbone_model import blocks_of, is_transformer

__all__ = [
    "LAYER_DECAY",
    "block_multipliers",
    "check_rate_arguments",
    "geometric_multipliers",
    "recipe_multipliers",
    "unfreeze_multipliers",
]

# The recipes' layer-wise rate decay for a vision transformer's blocks, as in
# BEiT's and timm's fine-tuning recipes (0.65 to 0.75 for ViT-B).
LAYER_DECAY = 0.75


def block_multipliers(model, lr_range=None, factor=None, groups=None):
    """Learning-rate multipliers per layer name for the trainable blocks.

    With `lr_range=(lo, hi)` they run geometrically from `lo/hi` (lowest
    trainable block) to 1 (the head); with `factor`, the block `k` steps
    below the head gets `factor**k` (ULMFiT's discriminative rates).
    `groups` (lists of layers, stem to top) replaces the model's own blocks.
    """
    if groups is None:
        per_owner = {}
        for owner, _, layers in blocks_of(model):
            per_owner.setdefault(id(owner), []).append(layers)
        groups_per_owner = list(per_owner.values())
    else:
        groups_per_owner = [groups]
    multipliers = {}
    for owner_groups in groups_per_owner:
        trainable = [g for g in owner_groups if any(l.trainable_weights for l in g)]
        if lr_range is not None:
            ranked = range(len(trainable) + 1)  # the head is the last group
            scales = list(geometric_multipliers(list(ranked), lr_range).values())
        else:
            scales = [factor ** (len(trainable) - i) for i in range(len(trainable))]
        for layers, scale in zip(trainable, scales):
            for layer in layers:
                if layer.weights:
                    # The path prefixes the layer's variable paths, also for a
                    # KerasHub layer first built inside an encoder layer.
                    multipliers[getattr(layer, "path", None) or layer.name] = float(scale)
    return multipliers


def recipe_multipliers(model, lr_range):
    """The recipes' per-block rates: `lr_range`'s geometric spread for a CNN,
    `LAYER_DECAY` per block for a transformer (the standard ViT recipe)."""
    if is_transformer(model):
        return block_multipliers(model, factor=LAYER_DECAY)
    return block_multipliers(model, lr_range=lr_range)


def geometric_multipliers(groups, lr_range):
    """Multipliers spread geometrically over ordered groups (fastai's slice).

    Args:
        groups: group names from lowest (stem side) to highest (head).
        lr_range: `(lo, hi)` learning-rate ratio: the lowest group gets
            `lo / hi`, the highest 1.

    Returns:
        A dict from group name to multiplier.
    """
    lo, hi = _check_range(lr_range)
    count = len(groups)
    if count == 1:
        return {groups[0]: 1.0}
    ratio = lo / hi
    return {group: float(ratio ** (1 - index / (count - 1))) for index, group in enumerate(groups)}


def _check_range(lr_range):
    try:
        lo, hi = (float(x) for x in lr_range)
    except (TypeError, ValueError):
        lo = hi = None
    if lo is None or not (0 < lo <= hi) or not math.isfinite(hi):
        raise ValueError(
            f"`lr_range` must be a pair (lo, hi) with 0 < lo <= hi. Received: lr_range={lr_range!r}"
        )
    return lo, hi


def check_rate_arguments(lr_range=None, lr_decay=None):
    """The one check of `unfreeze`'s rate arguments: `lr_decay` in (0, 1],
    and not both. `lr_range` itself is checked where it is spread."""
    if lr_decay is not None and (
        isinstance(lr_decay, bool)
        or not isinstance(lr_decay, (int, float))
        or not 0 < lr_decay <= 1
    ):
        raise ValueError(f"`lr_decay` must be in (0, 1]. Received: lr_decay={lr_decay!r}")
    if lr_decay is not None and lr_range is not None:
        raise ValueError(
            "Pass `lr_range` (rates from lo to hi) or `lr_decay` (a factor per block), not "
            f"both. Received: lr_range={lr_range!r}, lr_decay={lr_decay!r}"
        )


def unfreeze_multipliers(model, lr_range=None, lr_decay=None):
    """The multipliers `unfreeze(..., lr_range=..., lr_decay=...)` sets: the
    geometric spread over the trainable blocks, or the decay per block."""
    check_rate_arguments(lr_range, lr_decay)
    if lr_range is not None:
        return block_multipliers(model, lr_range)
    return block_multipliers(model, factor=float(lr_decay))
