"""`HubLayer`: TF-Hub SavedModels as Keras 3 layers (TensorFlow backend).

`tensorflow_hub.KerasLayer` is a tf_keras (Keras 2) layer, which a Keras 3
model refuses, and `keras.layers.TFSMLayer` forwards no `training` flag and
drops regularization losses. `HubLayer` follows hub.KerasLayer's contract in
Keras 3. `export` writes the format it reads best, a TF2 reusable SavedModel.
"""

import inspect
import os
import shutil
import sys
import types

import keras

from keras_transfer.utils import _compat, _io

__all__ = ["HubLayer", "export", "is_handle", "resolve"]

_URL_PREFIXES = ("http://", "https://", "gs://")
# The marker file of the TF1 Hub format (hub.Module), beside saved_model.pb.
_TF1_MARKER = "tfhub_module.pb"
_LOAD_OPTIONS = (
    "allow_partial_checkpoint",
    "experimental_io_device",
    "experimental_skip_checkpoint",
    "experimental_variable_policy",
)


@keras.saving.register_keras_serializable(package="keras_transfer")
class HubLayer(keras.layers.Layer):
    """A TF-Hub model, or any SavedModel, as a Keras 3 layer.

    It loads:

    - TF2 reusable SavedModels (TF-Hub's format: `__call__(inputs,
      training)`, `variables`, `trainable_variables`,
      `regularization_losses`). The model's variables become the layer's
      weights, with their trainable/non-trainable split, so `fit` trains
      them when the layer is trainable; the model's regularization losses
      join the layer's losses while it is trainable. `training` reaches the
      model only when the layer is trainable: a frozen Hub model always runs
      in inference mode, with its BatchNorm statistics untouched.
    - A SavedModel signature (`signature="serving_default"` or another):
      the output named by `output_key`, all outputs as a dict
      (`signature_outputs_as_dict=True`), or the only one.
    - The TF1 Hub format (its `default` signature), for inference only.

    It runs on the TensorFlow backend only. A model that holds it saves to
    `.keras` with the current values of the variables; loading it again
    needs the handle (the graph is not copied) and, as for Keras's own
    `TFSMLayer`, `safe_mode=False`, since the graph comes from outside the
    file.

    Example:

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "encoder")
    >>> encoder = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3),
    ...                             keras.layers.GlobalAveragePooling2D()])
    >>> keras_transfer.hub.export(encoder, path)
    >>> layer = keras_transfer.hub.HubLayer(path, trainable=True)
    >>> model = keras.Sequential([keras.Input((8, 8, 3)), layer, keras.layers.Dense(2)])
    >>> model.output_shape, len(layer.trainable_weights)
    ((None, 2), 2)

    Args:
        handle: a local SavedModel directory, or a TF-Hub / Kaggle handle
            (a URL), resolved and cached by `tensorflow_hub`
            (`TFHUB_CACHE_DIR`).
        trainable: whether `fit` trains the model's variables. TF1 Hub
            models and signatures cannot be trained.
        arguments: a dict of extra keyword arguments for each call.
        signature: the name of a signature to call instead of `__call__`.
            TF1 Hub models use `"default"`.
        output_key: the output to return when the model returns a dict.
        signature_outputs_as_dict: return a signature's outputs as a dict.
        tags: the MetaGraph tags to load; TF1 Hub models default to the
            empty set.
        load_options: a `tf.saved_model.LoadOptions`, or a dict of its
            arguments.
        dtype: the layer's dtype policy. The model's own dtypes are fixed
            in the SavedModel: floating inputs are cast to them.
        name: the layer's name.
        **kwargs: base layer keyword arguments.
    """

    def __init__(
        self,
        handle,
        trainable=False,
        arguments=None,
        signature=None,
        output_key=None,
        signature_outputs_as_dict=False,
        tags=None,
        load_options=None,
        dtype=None,
        name=None,
        **kwargs,
    ):
        _check_backend("HubLayer")
        super().__init__(trainable=trainable, dtype=dtype, name=name, **kwargs)
        if isinstance(handle, os.PathLike):
            handle = os.fspath(handle)
        if not isinstance(handle, str):
            raise TypeError(
                "`handle` must be a SavedModel directory or a TF-Hub handle (a "
                f"string). Received: handle={handle!r} of type {type(handle).__name__}"
            )
        if arguments is not None and not isinstance(arguments, dict):
            raise TypeError(f"`arguments` must be a dict. Received: arguments={arguments!r}")
        self.handle = handle
        self.arguments = dict(arguments or {})
        self.tags = None if tags is None else sorted(tags)
        self.load_options = _load_options_config(load_options)
        path = resolve(handle)
        tf = _tensorflow()
        self.is_tf1_format = tf.io.gfile.exists(os.path.join(path, _TF1_MARKER))
        if self.is_tf1_format and tags is None:
            tags = []
        options = tf.saved_model.LoadOptions(**self.load_options) if self.load_options else None
        # Tracked, as hub.KerasLayer does: an export of the model then finds
        # the SavedModel's own resources (tables, assets) too.
        self._module = module = tf.compat.v1.saved_model.load_v2(path, tags=tags, options=options)
        if self.is_tf1_format and signature is None:
            signature = "default"
            if not signature_outputs_as_dict and output_key is None:
                output_key = "default"
        self.signature = signature
        self.output_key = output_key
        self.signature_outputs_as_dict = bool(signature_outputs_as_dict)
        self._function = self._pick_function(module)
        self._input_spec_tree = self._find_input_spec()
        self._check_outputs()
        self._track_module_variables(module)
        self._regularization_losses = (
            [] if signature else list(getattr(module, "regularization_losses", []) or [])
        )
        # XLA recompiles a restored SavedModel function at every step: 33 s a
        # step against 0.24 s without it (MobileNetV2, TF CPU). "auto" and
        # jit_compile=True then fall back to a compiled tf.function.
        self.supports_jit = False
        self.built = True
        if self.trainable:
            self.check_fine_tunable()

    # --- Loading ---------------------------------------------------------------

    def _pick_function(self, module):
        signatures = dict(getattr(module, "signatures", {}) or {})
        if self.signature is None:
            if not callable(module):
                raise ValueError(
                    f"The SavedModel at {self.handle!r} is not callable (it has no "
                    "`__call__`, so it is not a reusable TF-Hub model). Pass "
                    f"`signature=`, one of {sorted(signatures)}. Received: signature=None"
                )
            self._takes_training = "training" in inspect.signature(module.__call__).parameters
            return module
        if self.signature not in signatures:
            raise ValueError(
                f"The SavedModel at {self.handle!r} has no signature "
                f"{self.signature!r}. Available signatures: {sorted(signatures)}. "
                f"Received: signature={self.signature!r}"
            )
        self._takes_training = False
        return signatures[self.signature]

    def _find_input_spec(self):
        if self.signature is not None:
            specs = dict(self._function.structured_input_signature[1])
            for key in self.arguments:
                specs.pop(key, None)
            return specs
        functions = getattr(self._function.__call__, "concrete_functions", None) or []
        for function in functions:
            args = function.structured_input_signature[0]
            if args:
                return args[0]
        return None

    def _check_outputs(self):
        if self.signature is None:
            return
        keys = sorted(self._function.structured_outputs)
        if self.output_key is not None and self.output_key not in keys:
            raise ValueError(
                f"Signature {self.signature!r} of {self.handle!r} has no output "
                f"{self.output_key!r}. Its outputs: {keys}. Received: "
                f"output_key={self.output_key!r}"
            )
        if self.output_key is None and not self.signature_outputs_as_dict and len(keys) > 1:
            raise ValueError(
                f"Signature {self.signature!r} of {self.handle!r} has several outputs, "
                f"{keys}: pass `output_key=` (one of them) or "
                "`signature_outputs_as_dict=True`. Received: output_key=None"
            )

    def _track_module_variables(self, module):
        source = module if self.signature is None else self._function
        variables = list(getattr(source, "variables", None) or [])
        if not variables and self.signature is None:
            variables = list(getattr(module, "trainable_variables", []) or [])
        trainable = {id(v) for v in getattr(source, "trainable_variables", None) or []}
        if self.is_tf1_format or self.signature is not None:
            trainable = set()  # read-only: see check_fine_tunable
        taken = set()
        for variable in variables:
            name = variable.name.split(":")[0].replace("/", "_")
            while name in taken:
                name += "_"
            taken.add(name)
            # Wrapping the tf.Variable (not copying it) is what makes the
            # SavedModel's graph read and update the layer's weights.
            with keras.name_scope(self.name, caller=self):
                wrapped = keras.Variable(
                    variable,
                    trainable=id(variable) in trainable,
                    dtype=variable.dtype,
                    name=name,
                    autocast=False,
                )
            _compat.track_variable(self, wrapped)

    # --- Calling ----------------------------------------------------------------

    @property
    def fine_tunable(self):
        """Whether the model's variables can be trained through this layer."""
        return not self.is_tf1_format and self.signature is None

    def check_fine_tunable(self):
        """Raises a `ValueError` saying why, where the model cannot be trained."""
        if self.is_tf1_format:
            raise ValueError(
                f"{self.handle!r} is in the TF1 Hub format, which loads as a pruned "
                "graph function: it has no training mode, no update ops for "
                "BatchNorm and no regularization losses, so fine-tuning it would "
                "be silently wrong. Use it frozen (trainable=False, "
                "strategy='feature_extraction') or a TF2 version of the model. "
                "Received: trainable=True"
            )
        if self.signature is not None:
            raise ValueError(
                f"A SavedModel signature ({self.signature!r}) has no training mode "
                "and no regularization losses, so it is loaded for inference only. "
                "Fine-tune through the model's `__call__` (signature=None). "
                "Received: trainable=True"
            )

    def call(self, inputs, training=None):
        if self.trainable:
            self.check_fine_tunable()
        inputs = _conform(inputs, self._input_spec_tree, self.name)
        kwargs = dict(self.arguments)
        if self.signature is not None:
            names = list(self._input_spec_tree)
            if isinstance(inputs, dict):
                kwargs.update(inputs)
            else:
                kwargs[names[0]] = inputs
            result = self._function(**kwargs)
        else:
            if self._takes_training:
                kwargs["training"] = bool(training) and self.trainable
            result = self._function(inputs, **kwargs)
            if self.trainable:
                for loss in self._regularization_losses:
                    self.add_loss(loss())
        return self._select_output(result)

    def _select_output(self, result):
        if not isinstance(result, dict):
            if self.output_key is not None:
                raise ValueError(
                    f"{self.handle!r} returns a single tensor, not a dict: "
                    f"`output_key` does not apply. Received: output_key={self.output_key!r}"
                )
            return result
        if self.output_key is not None:
            if self.output_key not in result:
                raise ValueError(
                    f"{self.handle!r} has no output {self.output_key!r}. Its outputs: "
                    f"{sorted(result)}. Received: output_key={self.output_key!r}"
                )
            return result[self.output_key]
        if self.signature is not None and not self.signature_outputs_as_dict:
            return next(iter(result.values()))  # the only output (checked at init)
        return result

    @property
    def image_shape(self):
        """`(height, width, channels)` the model takes, `None` where free."""
        spec = self._input_spec_tree
        if isinstance(spec, dict) and len(spec) == 1:
            spec = next(iter(spec.values()))
        shape = getattr(spec, "shape", None)
        if shape is None or shape.rank != 4:
            return None
        return tuple(shape.as_list()[1:])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "handle": self.handle,
                "arguments": self.arguments or None,
                "signature": self.signature,
                "output_key": self.output_key,
                "signature_outputs_as_dict": self.signature_outputs_as_dict,
                "tags": self.tags,
                "load_options": self.load_options or None,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        # Refused while a file loads in safe mode; a direct call (cloning)
        # runs outside any safe-mode scope.
        if _compat.in_safe_mode():
            raise ValueError(
                "Loading a HubLayer runs the graph of the SavedModel at "
                f"{config.get('handle')!r}, which is not part of the file being "
                "loaded and may hold arbitrary TensorFlow ops, so it is refused in "
                "safe mode (as Keras refuses TFSMLayer). If you trust it, pass "
                "`safe_mode=False` to `keras.models.load_model`, or call "
                "`keras.config.enable_unsafe_deserialization()`. Received: safe_mode=True"
            )
        return cls(**config)


def _conform(inputs, spec, name):
    """Checks rank, sizes and dtype against the SavedModel's input spec;
    casts floating inputs to its float type (the graph's dtypes are fixed)."""
    tf = _tensorflow()
    if isinstance(spec, dict):
        if isinstance(inputs, dict):
            missing = sorted(set(spec) - set(inputs))
            if missing:
                raise ValueError(
                    f"HubLayer {name!r} needs the inputs {sorted(spec)}. Received: a "
                    f"dict with keys {sorted(inputs)} (missing {missing})"
                )
            return {k: _conform_one(v, spec.get(k), name, k) for k, v in inputs.items()}
        if len(spec) != 1:
            raise ValueError(
                f"HubLayer {name!r} needs a dict of inputs with keys {sorted(spec)}. "
                f"Received: a single tensor of shape {tuple(inputs.shape)}"
            )
        return _conform_one(inputs, next(iter(spec.values())), name, next(iter(spec)))
    if isinstance(spec, tf.TensorSpec) and not isinstance(inputs, dict):
        return _conform_one(inputs, spec, name, "inputs")
    return inputs


def _conform_one(x, spec, name, what):
    tf = _tensorflow()
    if spec is None:
        return x
    x = tf.convert_to_tensor(x) if not tf.is_tensor(x) else x
    expected = spec.shape
    wrong = expected.rank is not None and x.shape.rank != expected.rank
    if not wrong and expected.rank is not None:
        wrong = any(
            e is not None and g is not None and e != g
            for e, g in zip(expected.as_list()[1:], x.shape.as_list()[1:])
        )
    if wrong:
        raise ValueError(
            f"HubLayer {name!r} takes {what} of shape {tuple(expected.as_list())} (the "
            f"SavedModel's signature). Received: {what} of shape {tuple(x.shape.as_list())}"
        )
    if x.dtype != spec.dtype:
        if x.dtype.is_floating and spec.dtype.is_floating:
            return tf.cast(x, spec.dtype)
        raise ValueError(
            f"HubLayer {name!r} takes {what} of dtype {spec.dtype.name} (the "
            f"SavedModel's signature). Received: {what} of dtype {x.dtype.name}"
        )
    return x


def is_handle(value):
    """Whether `value` names a SavedModel (a path or a Hub URL), rather than
    a registered backbone name."""
    if isinstance(value, os.PathLike):
        return True
    if not isinstance(value, str):
        return False
    if value.startswith(_URL_PREFIXES) or os.path.sep in value:
        return True
    # A bare name is a path only where a SavedModel is.
    return os.path.isfile(os.path.join(value, "saved_model.pb"))


def resolve(handle):
    """The local directory of `handle`: itself, or the Hub cache's copy."""
    if handle.startswith(_URL_PREFIXES):
        return _tensorflow_hub().resolve(handle)
    if not os.path.exists(handle):
        raise FileNotFoundError(
            f"No SavedModel at {handle!r}: the path does not exist. Received: handle={handle!r}"
        )
    if not any(
        os.path.exists(os.path.join(handle, f)) for f in ("saved_model.pb", "saved_model.pbtxt")
    ):
        found = sorted(os.listdir(handle))[:8] if os.path.isdir(handle) else "a file"
        raise ValueError(
            f"{handle!r} is not a SavedModel directory: it holds no saved_model.pb. "
            f"Found: {found}. Received: handle={handle!r}"
        )
    return handle


def export(model, filepath, input_shape=None, overwrite=False):
    """Writes a Keras model as a TF2 reusable SavedModel (TF-Hub's format).

    The SavedModel has `__call__(inputs, training=False)`, traced for both
    values of `training` (BatchNorm statistics move under `training=True`),
    `variables`, `trainable_variables` and `regularization_losses` (one per
    weight regularizer), so `HubLayer` and `tensorflow_hub.KerasLayer` can
    fine-tune it. The directory is written whole or not at all.

    Example:

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "dense")
    >>> dense = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    >>> keras_transfer.hub.export(dense, path)
    >>> sorted(os.listdir(path))[-1]
    'variables'

    Args:
        model: a built Keras model (TensorFlow backend).
        filepath: the directory to write.
        input_shape: the input shape without the batch axis; `None`s make a
            size free (`(None, None, 3)`). Defaults to the model's own.
        overwrite: replace an existing SavedModel at `filepath`. Anything
            else there is never replaced.
    """
    _check_backend("hub.export")
    tf = _tensorflow()
    filepath = os.fspath(filepath)
    if os.path.exists(filepath):
        if not os.path.isfile(os.path.join(filepath, "saved_model.pb")):
            raise FileExistsError(
                f"{filepath!r} exists and is not a SavedModel: it is never replaced. "
                f"Choose another path. Received: filepath={filepath!r}"
            )
        if not overwrite:
            raise FileExistsError(
                f"{filepath!r} holds a SavedModel. Pass overwrite=True to replace it. "
                "Received: overwrite=False"
            )
    shape = tuple(model.input_shape[1:] if input_shape is None else input_shape)
    spec = tf.TensorSpec((None,) + shape, tf.float32, name="inputs")
    root = tf.__internal__.tracking.AutoTrackable()
    root.variables = [v.value for v in model.variables]
    root.trainable_variables = [v.value for v in model.trainable_variables]
    root.regularization_losses = [
        _regularization_loss(v)
        for v in model.trainable_variables
        if getattr(v, "regularizer", None) is not None
    ]
    call = tf.function(lambda inputs, training=False: model(inputs, training=training))
    for training in (False, True):
        call.get_concrete_function(spec, training=training)
    root.__call__ = call
    temporary = _io.staging_dir(filepath)
    try:
        tf.saved_model.save(root, str(temporary))
        _io.replace_dir(temporary, filepath)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def _regularization_loss(variable):
    tf = _tensorflow()
    return tf.function(lambda: variable.regularizer(variable), input_signature=[])


def _load_options_config(options):
    if options is None or isinstance(options, dict):
        return dict(options or {})
    return {key: getattr(options, key) for key in _LOAD_OPTIONS if hasattr(options, key)}


def _check_backend(what):
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise RuntimeError(
            f"{what} runs TF-Hub / SavedModel graphs, which need the TensorFlow "
            f"backend: set KERAS_BACKEND=tensorflow before importing Keras. "
            f"Received: the {backend!r} backend is active"
        )


def _tensorflow():
    import tensorflow as tf

    return tf


def _tensorflow_hub():
    """Imports tensorflow_hub (for its handle resolver and cache)."""
    try:
        import tensorflow_hub
    except ModuleNotFoundError as error:
        if error.name != "pkg_resources":
            raise ImportError(
                "TF-Hub handles need the tensorflow-hub package: pip install "
                "'keras-transfer[tensorflow]' (or tensorflow-hub). Local SavedModel "
                "directories do not."
            ) from error
        # tensorflow_hub 0.16 reads pkg_resources.parse_version once, at
        # import, and setuptools >= 82 no longer ships pkg_resources
        # (tensorflow/hub#934): lend it the same function for that import.
        from packaging.version import parse

        shim = types.ModuleType("pkg_resources")
        shim.parse_version = parse
        sys.modules["pkg_resources"] = shim
        try:
            import tensorflow_hub
        finally:
            del sys.modules["pkg_resources"]
    return tensorflow_hub
