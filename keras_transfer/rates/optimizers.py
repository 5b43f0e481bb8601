"""Per-block learning rates: `BlockwiseLR` wraps any Keras optimizer.

`keras.optimizers.MultiOptimizer` is gone from Keras 3, and one optimizer per
group would hide `learning_rate` from LR callbacks. `BlockwiseLR` keeps one
inner optimizer (so one learning rate, one schedule, one iteration count) and
scales the rate per variable when the update is applied.
"""

import fnmatch
import math

import keras
import numpy as np
from keras.saving import deserialize_keras_object, serialize_keras_object

from keras_transfer.utils import _compat

__all__ = [
    "BlockwiseLR",
    "refresh_compiled",
    "set_multipliers",
    "set_rate",
]


@keras.saving.register_keras_serializable(package="keras_transfer")
class BlockwiseLR(keras.optimizers.Optimizer):
    """An optimizer whose learning rate is scaled per variable.

    Each variable's update uses `learning_rate * multiplier`, where the
    multiplier comes from the first key of `multipliers` that matches the
    variable's path (`"layer_name/kernel"`). A key matches a path when it is
    the path, a layer name in front of it (`"head"` matches
    `"head/classifier/kernel"`), or an `fnmatch` pattern (`"block_1[56]_*"`).
    Variables no key matches use `default`.

    Everything else is the inner optimizer's: its moments, weight decay,
    clipping, schedule and iteration count. `learning_rate` reads and sets the
    inner optimizer's rate, so `ReduceLROnPlateau` and `LearningRateScheduler`
    work unchanged.

    Example:

    >>> inputs = keras.Input((4,))
    >>> hidden = keras.layers.Dense(3, name="body")(inputs)
    >>> model = keras.Model(inputs, keras.layers.Dense(2, name="head")(hidden))
    >>> optimizer = keras_transfer.optimizers.BlockwiseLR(
    ...     keras.optimizers.Adam(1e-3), {"body": 0.1})
    >>> model.compile(optimizer, "mse")
    >>> round(float(model.optimizer.learning_rate), 6)
    0.001

    Args:
        optimizer: the inner Keras optimizer (instance, name or config).
        multipliers: dict from key (variable path, layer name or `fnmatch`
            pattern) to a positive float.
        default: multiplier for variables that no key matches.
        strict: raise when a key matches none of the variables the optimizer
            is built for. `ktr.unfreeze` and `GradualUnfreezing` build with
            `strict=False`, as their keys may name frozen blocks.
        name: the optimizer's name.
    """

    def __init__(self, optimizer, multipliers=None, default=1.0, strict=True, name=None, **kwargs):
        super().__init__(learning_rate=0.0, name=name or "blockwise_lr", **kwargs)
        optimizer = keras.optimizers.get(optimizer)
        if isinstance(optimizer, BlockwiseLR):
            raise ValueError(
                "`optimizer` is already a BlockwiseLR; pass its inner optimizer. "
                f"Received: optimizer={optimizer.name!r}"
            )
        if optimizer.built:
            raise ValueError(
                "`optimizer` must not be built yet: its state would be lost. Received: "
                f"optimizer={optimizer.name!r}, built for "
                f"{len(_compat.optimizer_trainable_variables(optimizer))} variables"
            )
        # Its own copy: the per-group update is installed on the copy, so the
        # caller's optimizer object is never changed.
        optimizer = type(optimizer).from_config(optimizer.get_config())
        multipliers = dict(multipliers or {})
        for key, value in list(multipliers.items()) + [("default", default)]:
            if not isinstance(key, str):
                raise ValueError(
                    "`multipliers` keys must be strings (variable paths, layer "
                    f"names or patterns). Received: key {key!r}"
                )
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(
                    f"Multipliers must be finite non-negative numbers. Received: {key}={value!r}"
                )
        self.inner_optimizer = optimizer
        self.multipliers = {key: float(value) for key, value in multipliers.items()}
        self.default = float(default)
        self.strict = bool(strict)
        self._multiplier_of = {}
        self._deferred_state = None

    def multiplier_for(self, variable):
        """The multiplier of one variable (by its path)."""
        path = variable.path
        for key, value in self.multipliers.items():
            if path == key or path.startswith(key + "/") or fnmatch.fnmatchcase(path, key):
                return value
        return self.default

    def build(self, var_list):
        var_list = list(var_list)
        if not self.inner_optimizer.built:
            self.inner_optimizer.build(var_list)
        super().build(var_list)
        self._multiplier_of = {
            _compat.variable_key(self, v): self.multiplier_for(v) for v in var_list
        }
        if self.strict:
            paths = [v.path for v in var_list]
            unused = [
                key
                for key in self.multipliers
                if not any(
                    p == key or p.startswith(key + "/") or fnmatch.fnmatchcase(p, key)
                    for p in paths
                )
            ]
            if unused:
                raise ValueError(
                    f"`multipliers` names no variable for keys {unused}. Keys are "
                    "variable paths, layer names or fnmatch patterns; this "
                    f"optimizer trains {len(paths)} variables with paths like "
                    f"{paths[:3]}. Received: multipliers={self.multipliers}"
                )
        # One update per multiplier group, through the inner optimizer's own
        # (backend-specific, possibly fused) update, with a scaled rate.
        inner = self.inner_optimizer
        backend_update = _compat.backend_update_step(type(inner))

        plans = {}  # variable list -> {scale: indices}; torch runs this every step

        def grouped_update(grads, variables, learning_rate):
            key = tuple(map(id, variables))
            if key not in plans:
                plan = {}
                for index, variable in enumerate(variables):
                    scale = self._multiplier_of.get(
                        _compat.variable_key(self, variable), self.default
                    )
                    plan.setdefault(scale, []).append(index)
                plans[key] = plan
            for scale, indices in plans[key].items():
                if scale == 0.0:
                    continue
                rate = learning_rate if scale == 1.0 else learning_rate * scale
                backend_update(
                    inner, [grads[i] for i in indices], [variables[i] for i in indices], rate
                )

        # On BlockwiseLR's own copy of the inner optimizer (see __init__).
        _compat.set_backend_update_step(inner, grouped_update)

    def apply(self, grads, trainable_variables=None):
        if trainable_variables is None:
            trainable_variables = self._trainable_variables
        elif not self.built:
            self.build(trainable_variables)
        self.inner_optimizer.apply(grads, trainable_variables)

    @property
    def variables(self):
        return self.inner_optimizer.variables

    @property
    def learning_rate(self):
        return self.inner_optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        self.inner_optimizer.learning_rate = learning_rate

    @property
    def iterations(self):
        return self.inner_optimizer.iterations

    def scale_loss(self, loss):
        return self.inner_optimizer.scale_loss(loss)

    def finalize_variable_values(self, var_list):
        self.inner_optimizer.finalize_variable_values(var_list)

    def load_own_variables(self, store):
        # A backup written after more blocks were unfrozen holds more slots
        # than this optimizer has yet; keep them until the same trainable set
        # is rebuilt (see `freezing.refresh_compiled`).
        if len(store.keys()) != len(self.variables):
            self._deferred_state = [np.array(store[str(i)]) for i in range(len(store.keys()))]
            return
        for index, variable in enumerate(self.variables):
            variable.assign(store[str(index)])

    def __dir__(self):
        # Saving walks attributes: the inner optimizer's variables are saved
        # once, as this optimizer's own (see `load_own_variables`).
        return [name for name in super().__dir__() if name != "inner_optimizer"]

    def get_config(self):
        return {
            "name": self.name,
            "optimizer": serialize_keras_object(self.inner_optimizer),
            "multipliers": dict(self.multipliers),
            "default": self.default,
            "strict": self.strict,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["optimizer"] = deserialize_keras_object(
            config["optimizer"], custom_objects=custom_objects
        )
        return cls(**config)


# --- Rebuilding a compiled model's optimizer for a new trainable set ---------------


def set_rate(optimizer, rate):
    """Sets the (innermost) optimizer's rate when it is a plain float."""
    while hasattr(optimizer, "inner_optimizer"):
        optimizer = optimizer.inner_optimizer
    if isinstance(_compat.learning_rate_variable(optimizer), keras.Variable):
        optimizer.learning_rate = rate


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
        previous = _compat.optimizer_trainable_variables(old) if old.built else None
        if previous is not None and [id(v) for v in previous] == [id(v) for v in trainable]:
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
    _compat.compile_config(model)["optimizer"] = stored
    if getattr(model, "train_function", None) is not None:
        _compat.rebuild_train_function(model)


def set_multipliers(model, multipliers):
    """Gives each layer of `multipliers` its learning-rate multiplier.

    The model's optimizer is wrapped in (or its `BlockwiseLR` rebuilt with)
    these multipliers, its state kept.
    """
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
        _copy_by_path(_compat.optimizer_variables(old), _compat.optimizer_variables(new))
        return
    # Slot lists (Adam's `_momentums`, ...) hold one entry per trained
    # variable, in the order the optimizer was built with.
    old_variables = _compat.optimizer_trainable_variables(old)
    index = {id(v): i for i, v in enumerate(old_variables)}
    count = len(old_variables)
    slots = set()
    # Keras 3.15.1 keeps each slot kind as a list attribute of the optimizer.
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
        for j, variable in enumerate(_compat.optimizer_trainable_variables(new)):
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
