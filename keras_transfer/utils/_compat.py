"""Every use of Keras internals, in one place.

Keras's public API has no way to do a few things the library needs: run a
functional graph with a per-layer `training` rule, rebuild an optimizer's
state for a new trainable set, or scale an update per variable. Each
function here wraps one internal, says why it is needed and names the Keras
version it was checked against. A Keras release that renames one breaks
this module only; `tests/test_structure.py` checks that no other module
reaches into Keras.

Checked against Keras 3.15.1 (TensorFlow 2.21, JAX 0.10.2, torch 2.13).
"""

import importlib
import inspect

import keras

__all__ = [
    "backend_update_step",
    "compile_config",
    "flatten_layers",
    "in_safe_mode",
    "input_in_graph",
    "is_functional",
    "learning_rate_variable",
    "mark_built_at_init",
    "output_in_graph",
    "repaired_layer_configs",
    "patch_multi_worker_trainer",
    "optimizer_trainable_variables",
    "optimizer_variables",
    "own_trainable_variables",
    "print_msg",
    "rebuild_train_function",
    "run_functional_graph",
    "set_backend_update_step",
    "standardize_functional_inputs",
    "takes_training",
    "track_variable",
    "trainer_data_batches",
    "variable_key",
]


def _internal(path):
    return importlib.import_module(path)


# --- Layers and models ---------------------------------------------------------------


def is_functional(model):
    """Whether `model` is a functional graph (cut and tapped by layer name).
    3.15.1: `keras.src.models.functional.Functional` has no public alias."""
    return isinstance(model, _internal("keras.src.models.functional").Functional)


def run_functional_graph(model, inputs, operation_fn):
    """`Functional.call` with `operation_fn(layer)` wrapping each layer's call,
    so BackboneModel decides each layer's `training`. 3.15.1:
    `Functional._run_through_graph`."""
    return model._run_through_graph(inputs, operation_fn=operation_fn)


def standardize_functional_inputs(model, inputs):
    """3.15.1: `Functional._standardize_inputs` (dict/list inputs, dtype)."""
    return model._standardize_inputs(inputs)


def takes_training(layer):
    """Whether a layer's `call` takes `training`. 3.15.1:
    `Layer._call_context_args`, the set Keras itself consults."""
    return "training" in getattr(layer, "_call_context_args", ())


def flatten_layers(layer, include_self=True, recursive=True):
    """Every sub-layer, nested ones included. 3.15.1: `Layer._flatten_layers`
    (public `layers` lists only a model's direct children)."""
    return list(layer._flatten_layers(include_self=include_self, recursive=recursive))


def own_trainable_variables(layer):
    """A layer's own variables that can train, frozen or not (public
    `trainable_variables` is empty for a frozen layer). 3.15.1:
    `Layer._trainable_variables`."""
    return list(layer._trainable_variables)


def track_variable(layer, variable):
    """Makes a variable made outside `add_weight` (a SavedModel's) the
    layer's own. 3.15.1: `Layer._track_variable`."""
    layer._track_variable(variable)


def mark_built_at_init(layer):
    """A weightless layer that is built as soon as it is made. 3.15.1:
    `Layer._build_at_init`."""
    layer._build_at_init()


# --- Compiled models and optimizers ---------------------------------------------------


def compile_config(model):
    """The dict `compile()` was given, which `model.save` writes and
    `load_model` compiles with. 3.15.1: `Trainer._compile_config.config`."""
    return model._compile_config.config


def rebuild_train_function(model):
    """Rebuilds the train step for a new trainable set, keeping the loss and
    metrics. 3.15.1: JAX records the sharding of the training state first
    (`JAXTrainer._record_training_state_sharding_spec`)."""
    if hasattr(model, "_record_training_state_sharding_spec"):
        model._record_training_state_sharding_spec()
    model.make_train_function(force=True)


def optimizer_trainable_variables(optimizer):
    """The variables an optimizer was built for, in its slot order. 3.15.1:
    `BaseOptimizer._trainable_variables`."""
    return optimizer._trainable_variables


def optimizer_variables(optimizer):
    """An optimizer's own variables (iterations, rate, slots), without a
    wrapper's indirection. 3.15.1: `BaseOptimizer._variables`."""
    return optimizer._variables


def learning_rate_variable(optimizer):
    """The learning rate as stored: a variable, or a schedule. 3.15.1:
    `BaseOptimizer._learning_rate` (public `learning_rate` evaluates it)."""
    return optimizer._learning_rate


def variable_key(optimizer, variable):
    """The key an optimizer indexes a variable's slots by. 3.15.1:
    `BaseOptimizer._var_key`."""
    return optimizer._var_key(variable)


def backend_update_step(optimizer_class):
    """The backend's update of a list of variables at one rate, possibly
    fused. 3.15.1: `<backend>Optimizer._backend_update_step`."""
    return optimizer_class._backend_update_step


def set_backend_update_step(optimizer, update):
    """Replaces the update of one optimizer object (BlockwiseLR's own inner
    copy, never a user's), so each group of variables gets its own rate
    through the backend's own update. 3.15.1: see `backend_update_step`."""
    optimizer._backend_update_step = update


def trainer_data_batches(x, y, batch_size):
    """Batches per epoch of what `fit` takes, from Keras's own adapter, or
    `None`. 3.15.1: `keras.src.trainers.data_adapters.get_data_adapter`."""
    adapters = _internal("keras.src.trainers.data_adapters")
    return adapters.get_data_adapter(x, y, batch_size=batch_size, shuffle=False).num_batches


# --- Saving and messages --------------------------------------------------------------


def in_safe_mode():
    """Whether `load_model(safe_mode=True)` is loading: a SavedModel's code
    is refused then. 3.15.1: `keras.src.saving.serialization_lib`."""
    return _internal("keras.src.saving.serialization_lib").in_safe_mode()


def print_msg(message):
    """Keras's own message printer, which `keras.config.disable_interactive_logging()`
    sends to absl logging. 3.15.1: `keras.src.utils.io_utils.print_msg`."""
    _internal("keras.src.utils.io_utils").print_msg(message)


def patch_multi_worker_trainer():
    """Mends Keras's TensorFlow trainer for several workers (see
    `ktr.multi_worker`); returns whether it could. 3.15.1:
    `keras.src.backend.tensorflow.trainer`'s `TensorFlowTrainer._maybe_symbolic_build`,
    `reduce_per_replica` and `_collective_all_reduce_multi_worker`
    (keras-team/keras#20585), and `TFEpochIterator` (a sharded `PyDataset`,
    see `_per_worker_input`). A Keras without one of the first three is
    left alone."""
    try:
        trainer = _internal("keras.src.backend.tensorflow.trainer")
    except ImportError:
        return False
    tensorflow_trainer = getattr(trainer, "TensorFlowTrainer", None)
    multi_worker = getattr(trainer, "_collective_all_reduce_multi_worker", None)
    symbolic_build = getattr(tensorflow_trainer, "_maybe_symbolic_build", None)
    reduce_per_replica = getattr(trainer, "reduce_per_replica", None)
    if None in (multi_worker, symbolic_build, reduce_per_replica):
        return False
    import tensorflow as tf

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if strategy is None or iterator is None or not multi_worker(strategy):
            return symbolic_build(self, iterator=iterator, data_batch=data_batch)
        for _, _, batches in iterator:
            data_batch = next(batches)
            break
        data_batch = keras.tree.map_structure(
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
        return keras.tree.map_structure(
            lambda v: strategy.reduce("MEAN", v, axis=None if v.shape.rank == 0 else 0), values
        )

    epoch_iterator = getattr(trainer, "TFEpochIterator", None)
    if epoch_iterator is not None:
        epoch_iterator.__init__ = _per_worker_input(epoch_iterator.__init__, multi_worker)
    tensorflow_trainer._maybe_symbolic_build = _maybe_symbolic_build
    trainer.reduce_per_replica = _reduce_per_replica
    return True


def _per_worker_input(init, multi_worker):
    """`TFEpochIterator.__init__` that feeds a `PyDataset` holding only its
    worker's part (a `shard`, as `ktr.ImageStream` has) whole to each worker.
    Keras hands it to `experimental_distribute_dataset`, whose auto-sharding
    keeps 1/n of each worker's batch: a stream already split by file would
    lose half its images on two workers. 3.15.1: `TFEpochIterator` reads
    `self._distributed_dataset`; its adapter keeps the `py_dataset`."""

    def __init__(self, distribute_strategy=None, *args, **kwargs):
        init(self, distribute_strategy, *args, **kwargs)
        dataset = getattr(self.data_adapter, "py_dataset", None)
        if getattr(dataset, "shard", None) is not None and multi_worker(distribute_strategy):
            adapter = self.data_adapter
            self._distributed_dataset = distribute_strategy.distribute_datasets_from_function(
                lambda _: adapter.get_tf_dataset()
            )

    return __init__


def output_in_graph(model, layer):
    """`layer`'s output tensor in `model`'s own graph.

    `layer.output` is its *first* call's; a KerasHub transformer's layers are
    first called inside the KerasHub Backbone, then again in the graph
    `transfer()` writes out. Reads the functional model's private
    `_nodes_by_depth` (Keras 3.15.1).
    """
    node = _node_in_graph(model, layer)
    if node is None:
        return layer.output
    outputs = node.output_tensors
    return outputs[0] if len(outputs) == 1 else outputs


def input_in_graph(model, layer):
    """`layer`'s (first) input tensor in `model`'s own graph: for a nested
    functional model, `layer.input` is its own `Input`, not the tensor it
    is called on."""
    node = _node_in_graph(model, layer)
    return layer.input if node is None else node.input_tensors[0]


def _node_in_graph(model, layer):
    for nodes in model._nodes_by_depth.values():
        for node in nodes:
            if node.operation is layer:
                return node
    return None


# Some KerasHub layers' get_config() writes keys their __init__ refuses
# (keras-hub 0.32.0: ViTPatchingAndEmbedding's num_patches and
# num_positions, ViTEncoderBlock's key_dim): harmless inside a saved KerasHub
# Backbone, rebuilt from its own arguments, but fatal for a graph that holds
# the layer itself, as transfer()'s backbone does. Such keys are dropped.
_LAYER_KEYS = {"name", "trainable", "dtype", "autocast", "input_shape", "input_dim"}


def repaired_layer_configs(config):
    """A functional model's config without the keys its KerasHub layers'
    constructors refuse, so that it loads."""
    layers = []
    for layer in config.get("layers", []):
        module = str(layer.get("module", ""))
        if module.startswith("keras_hub"):
            cls = getattr(importlib.import_module(module), layer["class_name"], None)
            if cls is not None:
                accepted = set(inspect.signature(cls.__init__).parameters) | _LAYER_KEYS
                inner = {k: v for k, v in layer["config"].items() if k in accepted}
                layer = {**layer, "config": inner}
        layers.append(layer)
    return {**config, "layers": layers}
