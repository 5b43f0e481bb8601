"""`BackboneModel`, a functional backbone that knows its blocks and BN
policy, and block discovery: `find_backbones`, `blocks_of`."""

import keras
import numpy as np

from keras_transfer.backbones import registry
from keras_transfer.backbones.hub import HubLayer
from keras_transfer.backbones.penalties import StartingPoint, candidate_variables
from keras_transfer.layers import TokenPooling
from keras_transfer.utils import _compat
from keras_transfer.utils._options import BN_POLICIES, check_bn

__all__ = [
    "BN_POLICIES",
    "BackboneModel",
    "blocks_of",
    "find_backbones",
    "is_transformer",
]


@keras.saving.register_keras_serializable(package="keras_transfer")
class BackboneModel(keras.Model):
    """A functional model that carries its block split and BatchNorm policy.

    `transfer()` wraps every backbone in one. It differs from a plain
    functional model in how it passes `training` to its layers, because Keras
    3 gives every layer of a functional model the outer `training` value,
    even where the graph was built with `backbone(x, training=False)`:

    - a frozen layer (`trainable=False`) always runs in inference mode, so a
      frozen block's Dropout or stochastic depth never fires;
    - a BatchNormalization layer runs in inference mode, with its moving
      statistics untouched, unless the policy is `"train"`. Under
      `"train_affine"` its gamma and beta still train. A `HubLayer` follows
      the same rule, since its BatchNorm is inside its graph.

    Both the blocks and the policy are saved with the model, and so is an
    L2-SP starting point: as arrays in the weights file beside the
    variables, not in the JSON config.

    Args:
        inputs, outputs: as for a functional `keras.Model`.
        blocks: list of `[block name, [layer names]]`, from stem to top.
        bn: `"inference"`, `"train_affine"` or `"train"`.
        **kwargs: passed to `keras.Model` (`name`, ...).
    """

    def __init__(self, *args, blocks=None, bn="inference", **kwargs):
        super().__init__(*args, **kwargs)
        self.bn = check_bn(bn)
        self.blocks = [[name, list(layers)] for name, layers in blocks or []]

    def call(self, inputs, training=None, mask=None):
        # Functional.call, with our own rule for each layer's `training`.
        outputs = _compat.run_functional_graph(
            self,
            _compat.standardize_functional_inputs(self, inputs),
            operation_fn=lambda op: _with_policy(op, training, self.bn),
        )
        return outputs[0] if isinstance(outputs, list) and len(outputs) == 1 else outputs

    def get_config(self):
        config = super().get_config()
        config.update({"blocks": self.blocks, "bn": self.bn})
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        model = super().from_config(_compat.repaired_layer_configs(config), custom_objects)
        # A layer rebuilt frozen freezes the variables it makes itself, not
        # the sublayers it makes in `build` (a KerasHub transformer layer's).
        # Each is set on its own: under TensorFlow, setting a layer's
        # unchanged `trainable` does not reach its sublayers.
        for layer in _compat.flatten_layers(model, include_self=False):
            if not layer.trainable:
                for inner in _compat.flatten_layers(layer, include_self=False):
                    inner.trainable = False
        return model

    def save_own_variables(self, store):
        super().save_own_variables(store)
        variables = candidate_variables(self)
        held = [i for i, v in enumerate(variables) if isinstance(v.regularizer, StartingPoint)]
        if held:
            store["l2sp_index"] = np.array(held, "int64")
            store["l2sp_alpha"] = np.array([variables[i].regularizer.alpha for i in held])
            for i in held:
                store[f"l2sp_start_{i}"] = variables[i].regularizer.start

    def load_own_variables(self, store):
        keys = list(store.keys())
        super().load_own_variables({k: store[k] for k in keys if not k.startswith("l2sp_")})
        if "l2sp_index" not in keys:
            return
        variables = candidate_variables(self)
        for i, alpha in zip(np.asarray(store["l2sp_index"]), np.asarray(store["l2sp_alpha"])):
            variables[i].regularizer = StartingPoint(
                float(alpha), np.asarray(store[f"l2sp_start_{i}"])
            )


def _with_policy(op, training, bn):
    def call(*args, **kwargs):
        if _compat.takes_training(op) and training is not None:
            # A Hub model's BatchNorm is in its graph: one flag for all of it.
            frozen_stats = (
                isinstance(op, (keras.layers.BatchNormalization, HubLayer)) and bn != "train"
            )
            kwargs["training"] = bool(training) and op.trainable and not frozen_stats
        return op(*args, **kwargs)

    return call


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


def is_transformer(model):
    """Whether a backbone of `model` reads a transformer's tokens."""
    return any(
        isinstance(layer, TokenPooling) for net in find_backbones(model) for layer in net.layers
    )
