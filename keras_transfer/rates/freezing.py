"""Freeze and unfreeze by blocks, the BatchNorm policy, and trainable_summary.

Changing `layer.trainable` on a compiled Keras 3 model silently does nothing
until it is compiled again, and compiling again with the same optimizer
fails ("Unknown variable"). The helpers here make every change take effect:
on a compiled model they rebuild the optimizer for the new trainable set,
carry over the state of every variable that keeps training, and rebuild the
train step, which is also safe inside `fit` (see `GradualUnfreezing`).
"""

import keras

from keras_transfer.backbones.backbone_model import (
    BackboneModel,
    blocks_of,
    find_backbones,
    is_transformer,
)
from keras_transfer.backbones.hub import HubLayer
from keras_transfer.rates import regularizers
from keras_transfer.rates.optimizers import refresh_compiled, set_multipliers, set_rate
from keras_transfer.rates.rate_multipliers import check_rate_arguments, unfreeze_multipliers
from keras_transfer.utils import _compat
from keras_transfer.utils._options import check_bn

__all__ = [
    "check_bn_applies",
    "freeze",
    "trainable_summary",
    "unfreeze",
]


def freeze(model):
    """Freezes the backbone(s): every layer stops training, BN runs in inference.

    The head stays trainable. On a compiled model the change takes effect at
    the next step.

    Example:

    >>> model = keras_transfer.transfer("mobilenet", 2, weights=None,
    ...                                 input_shape=(32, 32, 3), strategy="fine_tune")
    >>> keras_transfer.freeze(model)
    >>> len(model.get_layer("backbone").trainable_weights)
    0
    """
    unfreeze(model, blocks=0)


def unfreeze(model, blocks="all", bn=None, lr_range=None, regularization=None, lr_decay=None):
    """Makes the top blocks of the backbone trainable, and the rest frozen.

    Example:

    >>> model = keras_transfer.transfer("mobilenet", 2, weights=None,
    ...                                 input_shape=(32, 32, 3))
    >>> keras_transfer.unfreeze(model, blocks=2)
    >>> [row["block"] for row in keras_transfer.trainable_summary(model, print_fn=None)
    ...  if row["trainable"] == "yes"]
    ['block_12', 'block_13', 'head']

    Args:
        model: a model built by `transfer()`, a registered keras.applications
            model, or any model with `blocks` given as layers.
        blocks: `"all"`; an int N, the top N blocks of each backbone; a block
            or layer name, meaning from there up; or a list of layers (or
            layer names) to make trainable.
        bn: BatchNorm policy for the unfrozen part: `"inference"` (frozen,
            inference mode), `"train_affine"` (gamma and beta train, the
            statistics stay frozen) or `"train"`. `None` keeps the current
            policy.
        lr_range: `(lo, hi)`, fastai's `slice(lo, hi)`: learning rates spread
            geometrically from `lo` for the lowest unfrozen block to `hi` for
            the head. The model must be compiled; its optimizer is wrapped in
            `ktr.optimizers.BlockwiseLR` and, when its rate is a float, set to
            `hi` (with a schedule, the schedule's rate is the head's).
        regularization: `"l2sp"` or a `ktr.regularizers.L2SP`: pull the
            backbone toward its current weights instead of toward zero.
        lr_decay: layer-wise learning-rate decay in `(0, 1]`, the standard
            recipe for fine-tuning vision transformers (BEiT, MAE, timm's
            `layer_decay`): the head trains at the optimizer's rate, the top
            block at `lr_decay` times it, the next at `lr_decay**2`, and so
            on down to the stem. The model must be compiled; not with
            `lr_range`.
    """
    regularization = regularizers.get(regularization)
    check_rate_arguments(lr_range, lr_decay)
    check_bn(bn, allow_none=True)
    check_bn_applies(model, bn)
    if isinstance(blocks, (list, tuple)):
        owners = find_backbones(model) or [model]
        wanted = {getattr(layer, "name", layer) for layer in blocks}
        unknown = wanted - {layer.name for owner in owners for layer in owner.layers}
        if unknown:
            raise ValueError(
                f"`blocks` names layers the model does not have. Received: {sorted(unknown)}"
            )
        selected = {(id(owner), name) for owner in owners for name in wanted}
    else:
        selected = {
            (id(owner), layer.name)
            for owner, layers in _top_blocks(blocks_of(model), blocks)
            for layer in layers
        }
        owners = _unique(owner for owner, _, _ in blocks_of(model))
    for owner in owners:
        for layer in owner.layers:
            if (id(owner), layer.name) in selected and isinstance(layer, HubLayer):
                layer.check_fine_tunable()  # before anything changes
    for owner in owners:
        policy = bn or getattr(owner, "bn", "inference")
        if isinstance(owner, BackboneModel):
            owner.bn = policy
        owner.trainable = True
        for layer in owner.layers:
            trainable = (id(owner), layer.name) in selected
            layer.trainable = trainable
            if trainable and policy == "inference":
                for sub in _flatten(layer):
                    if isinstance(sub, keras.layers.BatchNormalization):
                        sub.trainable = False
    if regularization is not None:
        regularization.attach(model)
    # The rates follow the new trainable set: computed after it is set.
    if lr_range is not None or lr_decay is not None:
        set_multipliers(model, unfreeze_multipliers(model, lr_range, lr_decay))
        if lr_range is not None:
            set_rate(model.optimizer, max(float(x) for x in lr_range))
    else:
        refresh_compiled(model)


def check_bn_applies(model, bn):
    """Refuses a BatchNorm policy other than the default for a transformer
    without BatchNormalization, where it would silently do nothing."""
    if bn not in (None, "inference") and is_transformer(model) and not _has_batch_norm(model):
        raise ValueError(
            "`bn` sets what BatchNormalization does, and this transformer has none: its "
            "LayerNorm keeps no running statistics, and its gamma and beta train with their "
            f"block. Leave bn='inference' (or None). Received: bn={bn!r}"
        )


def trainable_summary(model, print_fn="default"):
    """One row per block: name, layers, params, trainable, BN mode.

    Example:

    >>> model = keras_transfer.transfer("mobilenet", 2, weights=None,
    ...                                 input_shape=(32, 32, 3))
    >>> rows = keras_transfer.trainable_summary(model, print_fn=None)
    >>> rows[0]["block"], rows[0]["trainable"], rows[-1]["block"]
    ('stem', 'no', 'head')

    Args:
        model: the model.
        print_fn: called with the table's text; by default Keras's own
            printer (as `model.summary()`), `None` prints nothing.

    Returns:
        A list of dicts with keys `part`, `block`, `layers`, `params`,
        `trainable` (`"yes"`, `"no"` or `"partial"`) and `bn`.
    """
    rows = [
        _row(owner.name, name, layers, getattr(owner, "bn", "inference"))
        for owner, name, layers in blocks_of(model)
    ]
    in_blocks = {id(owner) for owner in find_backbones(model)}
    for layer in getattr(model, "layers", []):
        if id(layer) not in in_blocks and layer.weights and layer is not model:
            rows.append(_row(layer.name, layer.name, [layer], "train"))
    if print_fn == "default":
        print_fn = _compat.print_msg
    if print_fn is not None:
        header = ("part", "block", "layers", "params", "trainable", "bn")
        table = [header] + [tuple(str(row[k]) for k in header) for row in rows]
        widths = [max(len(line[i]) for line in table) for i in range(len(header))]
        print_fn("\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)) for line in table))
    return rows


def _top_blocks(all_blocks, blocks):
    """The blocks to train, per backbone, for `blocks` = "all" | int | name."""
    per_owner = {}
    for owner, name, layers in all_blocks:
        per_owner.setdefault(id(owner), (owner, []))[1].append((name, layers))
    chosen = []
    for owner, entries in per_owner.values():
        if blocks == "all":
            start = 0
        elif isinstance(blocks, int) and not isinstance(blocks, bool) and blocks >= 0:
            start = max(len(entries) - blocks, 0) if blocks else len(entries)
        elif isinstance(blocks, str):
            start = _start_of(owner, entries, blocks)
        else:
            raise ValueError(
                "`blocks` must be 'all', a non-negative int, a block or layer "
                f"name, or a list of layers. Received: blocks={blocks!r}"
            )
        chosen.extend((owner, layers) for _, layers in entries[start:])
    return chosen


def _start_of(owner, entries, name):
    for index, (block, layers) in enumerate(entries):
        if block == name or any(layer.name == name for layer in layers):
            return index
    names = [block for block, _ in entries]
    raise ValueError(
        f"No block or layer named {name!r} in {owner.name!r}. Received: "
        f"blocks={name!r}. Blocks: {names}"
    )


def _row(part, block, layers, policy):
    params = sum(layer.count_params() for layer in layers if layer.built)
    leaves = [sub for layer in layers for sub in _flatten(layer)]
    bns = [s for s in leaves if isinstance(s, keras.layers.BatchNormalization)]
    # BatchNorm follows the `bn` column; "trainable" speaks of the rest.
    others = [s for s in leaves if s.weights and s not in bns] or bns
    flags = [bool(s.trainable_weights) for s in others]
    trainable = "yes" if flags and all(flags) else "partial" if any(flags) else "no"
    if not bns:
        bn = "-"
    elif not any(b.trainable for b in bns):
        bn = "frozen"
    else:
        bn = policy
    return {
        "part": part,
        "block": block,
        "layers": len(layers),
        "params": params,
        "trainable": trainable,
        "bn": bn,
    }


def _has_batch_norm(model):
    return any(
        isinstance(sub, keras.layers.BatchNormalization)
        for net in find_backbones(model)
        for layer in net.layers
        for sub in _flatten(layer)
    )


def _flatten(layer):
    if hasattr(layer, "layers") and layer.layers:
        return [sub for child in layer.layers for sub in _flatten(child)]
    return [layer]


def _unique(items):
    seen, out = set(), []
    for item in items:
        if id(item) not in seen:
            seen.add(id(item))
            out.append(item)
    return out
