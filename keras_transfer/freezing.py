"""Freeze and unfreeze by blocks, the BatchNorm policy, and trainable_summary.

Changing `layer.trainable` on a compiled Keras 3 model silently does nothing
until it is compiled again, and compiling again with the same optimizer
fails ("Unknown variable"). The helpers here make every change take effect:
on a compiled model they rebuild the optimizer for the new trainable set,
carry over the state of every variable that keeps training, and rebuild the
train step, which is also safe inside `fit` (see `GradualUnfreezing`).
"""

import keras

from keras_transfer.backbone_model import BN_POLICIES, BackboneModel
from keras_transfer import backbones as registry
from keras_transfer.hub import HubLayer


def find_backbones(model):
    """The `BackboneModel`s inside a model built by `transfer()` (or itself)."""
    if isinstance(model, BackboneModel):
        return [model]
    return [layer for layer in getattr(model, "layers", []) if isinstance(layer, BackboneModel)]


def blocks_of(model):
    """`[(backbone, block name, [layers])]` from stem to top, per backbone.

    Raises:
        ValueError: for a model whose blocks cannot be found, saying how to
            pass layers explicitly.
    """
    backbones = find_backbones(model)
    if backbones:
        return [
            (backbone, name, [backbone.get_layer(n) for n in names])
            for backbone in backbones
            for name, names in backbone.blocks
        ]
    family = registry.family_of_model(model) if hasattr(model, "layers") else None
    if family is None:
        raise ValueError(
            f"Cannot find the blocks of model {getattr(model, 'name', model)!r}: it "
            "was not built by keras_transfer.transfer() and is not a registered "
            "keras.applications model. Pass the layers to unfreeze explicitly, e.g. "
            "kt.unfreeze(model, blocks=['conv5_block1_1_conv', ...]) (layer "
            "names or layers), or build the model with kt.transfer(model, ...)."
        )
    return [
        (model, name, [model.get_layer(n) for n in names])
        for name, names in registry.split_blocks(model.layers, family.blocks)
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


def unfreeze(model, blocks="all", bn=None, lr_range=None, regularization=None):
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
            `kt.optimizers.BlockwiseLR` and, when its rate is a float, set to
            `hi` (with a schedule, the schedule's rate is the head's).
        regularization: `"l2sp"` or a `kt.regularizers.L2SP`: pull the
            backbone toward its current weights instead of toward zero.
    """
    from keras_transfer import regularizers

    regularization = regularizers.get(regularization)
    if bn is not None and bn not in BN_POLICIES:
        raise ValueError(f"`bn` must be one of {BN_POLICIES} or None. Received: bn={bn!r}")
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
    if lr_range is not None:
        set_multipliers(model, block_multipliers(model, lr_range))
        _set_rate(model.optimizer, max(float(x) for x in lr_range))
    else:
        refresh_compiled(model)


def block_multipliers(model, lr_range=None, factor=None, groups=None):
    """Learning-rate multipliers per layer name for the trainable blocks.

    With `lr_range=(lo, hi)` they run geometrically from `lo/hi` (lowest
    trainable block) to 1 (the head); with `factor`, the block `k` steps
    below the head gets `factor**k` (ULMFiT's discriminative rates).
    `groups` (lists of layers, stem to top) replaces the model's own blocks.
    """
    from keras_transfer.optimizers import geometric_multipliers

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
                    multipliers[layer.name] = float(scale)
    return multipliers


def _set_rate(optimizer, rate):
    while hasattr(optimizer, "inner_optimizer"):
        optimizer = optimizer.inner_optimizer
    if isinstance(optimizer._learning_rate, keras.Variable):
        optimizer.learning_rate = rate


def trainable_summary(model, print_fn=print):
    """One row per block: name, layers, params, trainable, BN mode.

    Example:

    >>> model = keras_transfer.transfer("mobilenet", 2, weights=None,
    ...                                 input_shape=(32, 32, 3))
    >>> rows = keras_transfer.trainable_summary(model, print_fn=None)
    >>> rows[0]["block"], rows[0]["trainable"], rows[-1]["block"]
    ('stem', 'no', 'head')

    Args:
        model: the model.
        print_fn: called with the table's text; `None` prints nothing.

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
    if print_fn is not None:
        header = ("part", "block", "layers", "params", "trainable", "bn")
        table = [header] + [tuple(str(row[k]) for k in header) for row in rows]
        widths = [max(len(line[i]) for line in table) for i in range(len(header))]
        print_fn("\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)) for line in table))
    return rows


def refresh_compiled(model, optimizer=None):
    """Makes a new trainable set take effect on a compiled model, even mid-fit.

    A new optimizer (`optimizer`, or one rebuilt from the model's own config)
    is built for the model's trainable variables. The iteration count, the
    learning rate and the slots (moments, ...) of every variable that keeps
    training are carried over, so their state is kept. The model's train
    step is rebuilt for the new set; the loss, metrics and their state are
    left alone, so this is safe inside `fit` (at an epoch boundary).
    """
    if not getattr(model, "compiled", False) or getattr(model, "optimizer", None) is None:
        return
    old = model.optimizer
    trainable = model.trainable_variables
    if optimizer is None:
        if old.built and [id(v) for v in old._trainable_variables] == [id(v) for v in trainable]:
            return  # nothing to do: same variables, same order
        optimizer = keras.optimizers.deserialize(keras.optimizers.serialize(old))
        # A BlockwiseLR's keys may name blocks that are frozen now.
        wrapper = optimizer
        while wrapper is not None:
            if hasattr(wrapper, "strict"):
                wrapper.strict = False
            wrapper = getattr(wrapper, "inner_optimizer", None)
    # Built here, not in the first traced step: on TensorFlow, variables
    # made while tracing make tf.function trace the whole step twice.
    optimizer.build(trainable)
    if old.built or getattr(old, "_deferred_state", None) is not None:
        _carry_state(old, optimizer)
    model.optimizer = optimizer
    # What `model.save` writes; compile() wraps a LossScaleOptimizer again.
    stored = optimizer
    if isinstance(stored, keras.optimizers.LossScaleOptimizer):
        stored = stored.inner_optimizer
    model._compile_config.config["optimizer"] = stored
    if getattr(model, "train_function", None) is not None:
        if hasattr(model, "_record_training_state_sharding_spec"):  # JAX
            model._record_training_state_sharding_spec()
        model.make_train_function(force=True)


def set_multipliers(model, multipliers):
    """Gives each layer of `multipliers` its learning-rate multiplier.

    The model's optimizer is wrapped in (or its `BlockwiseLR` rebuilt with)
    these multipliers, its state kept.
    """
    from keras_transfer.optimizers import BlockwiseLR

    if not getattr(model, "compiled", False):
        raise ValueError(
            "Per-block learning rates need a compiled model: call "
            "model.compile(optimizer, loss, ...) first. Received: a model that "
            "is not compiled."
        )
    optimizer = model.optimizer
    scale = None
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        scale, optimizer = optimizer, optimizer.inner_optimizer
    inner = optimizer.inner_optimizer if isinstance(optimizer, BlockwiseLR) else optimizer
    inner = keras.optimizers.deserialize(keras.optimizers.serialize(inner))
    new = BlockwiseLR(inner, multipliers, strict=False, name=optimizer.name)
    if scale is not None:
        new = keras.optimizers.LossScaleOptimizer(
            new,
            initial_scale=scale.initial_scale,
            dynamic_growth_steps=scale.dynamic_growth_steps,
            name=scale.name,
        )
    refresh_compiled(model, optimizer=new)


def _carry_state(old, new):
    """Copies optimizer state from `old` to `new` (built), per variable."""
    deferred = getattr(old, "_deferred_state", None)
    if deferred is not None:
        if len(deferred) == len(new.variables) and all(
            tuple(v.shape) == value.shape for v, value in zip(new.variables, deferred)
        ):
            for variable, value in zip(new.variables, deferred):
                variable.assign(value)
            return
        new._deferred_state = deferred  # saved for another trainable set: wait
    if hasattr(old, "inner_optimizer") and hasattr(new, "inner_optimizer"):
        # A wrapper (BlockwiseLR, LossScaleOptimizer): the inner state, then
        # its own (the loss scale).
        if old.inner_optimizer.built:
            _carry_state(old.inner_optimizer, new.inner_optimizer)
        _copy_by_path(old._variables, new._variables)
        return
    # Slot lists (Adam's `_momentums`, ...) hold one entry per trained
    # variable, in the order the optimizer was built with.
    index = {id(v): i for i, v in enumerate(old._trainable_variables)}
    count = len(old._trainable_variables)
    slots = set()
    for attr, values in vars(old).items():
        if (
            attr in ("_variables", "_trainable_variables")
            or not isinstance(values, list)
            or count == 0
            or len(values) != count
            or not all(v is None or isinstance(v, keras.Variable) for v in values)
            or not isinstance(getattr(new, attr, None), list)
        ):
            continue
        targets = getattr(new, attr)
        for j, variable in enumerate(new._trainable_variables):
            i = index.get(id(variable))
            if i is not None and values[i] is not None and targets[j] is not None:
                targets[j].assign(values[i])
        slots.update(id(v) for v in values if v is not None)
    # The rest (iterations, learning rate) by path.
    _copy_by_path([v for v in old.variables if id(v) not in slots], new.variables)


def _copy_by_path(sources, targets):
    by_path = {v.path: v for v in sources}
    for variable in targets:
        match = by_path.get(variable.path)
        if match is not None and tuple(match.shape) == tuple(variable.shape):
            variable.assign(match)


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
