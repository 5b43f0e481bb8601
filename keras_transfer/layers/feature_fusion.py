import keras
from keras import ops

from keras_transfer.layers.transfer_matrix import TransferMatrix
from keras_transfer.utils._options import FUSIONS

__all__ = ["FeatureFusion"]


@keras.saving.register_keras_serializable(package="keras_transfer")
class FeatureFusion(keras.layers.Layer):
    """Fuses the features of several source backbones into one.

    This is the method's multi-source transfer: each backbone yields a
    feature vector for the same image, and this layer combines them along
    the last axis.

    - `"concat"` concatenates inputs of any widths.
    - `"sum"` and `"mean"` add or average them.
    - `"weighted"` learns one softmax weight per source (shared by all
      samples).
    - `"attention"` scores each source per sample with a small shared
      `Dense(1)` layer and takes the softmax-weighted sum.

    All modes but `"concat"` need equal widths. With `units`, every input
    first passes through its own `TransferMatrix(units)`, which maps it to
    that width (for every mode, `"concat"` included).

    Example:

    >>> a = np.random.rand(4, 8).astype("float32")
    >>> b = np.random.rand(4, 16).astype("float32")
    >>> fused = keras_transfer.layers.FeatureFusion("mean", units=6)([a, b])
    >>> tuple(fused.shape)
    (4, 6)

    Args:
        mode: One of `"concat"`, `"sum"`, `"mean"`, `"weighted"`,
            `"attention"`. Defaults to `"concat"`.
        units: Optional positive integer. When set, each input is first
            mapped to this width by its own `TransferMatrix`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.
    """

    def __init__(self, mode="concat", units=None, **kwargs):
        super().__init__(**kwargs)
        if mode not in FUSIONS:
            raise ValueError(f"`mode` must be one of {FUSIONS}. Received: mode={mode!r}")
        if units is not None and (
            isinstance(units, bool) or not isinstance(units, int) or units < 1
        ):
            raise ValueError(
                f"`units` must be None or a positive integer. Received: units={units!r}"
            )
        self.mode = mode
        self.units = units
        self.projections = []
        self.source_logits = None
        self.scorer = None

    def build(self, input_shape):
        shapes = self._check_shapes(input_shape)
        widths = [shape[-1] for shape in shapes]
        if self.units is not None:
            self.projections = []
            for index, shape in enumerate(shapes):
                projection = TransferMatrix(
                    self.units, dtype=self.dtype_policy, name=f"projection_{index}"
                )
                projection.build(shape)
                self.projections.append(projection)
            widths = [self.units] * len(shapes)
        elif self.mode != "concat" and len(set(widths)) > 1:
            raise ValueError(
                f'FeatureFusion(mode="{self.mode}") needs inputs of equal '
                f"widths, or `units` to map them to one width. Received: "
                f"widths {widths}. Pass e.g. units={max(widths)}, or use "
                'mode="concat".'
            )
        if self.mode == "weighted":
            self.source_logits = self.add_weight(
                name="source_logits", shape=(len(shapes),), initializer="zeros"
            )
        elif self.mode == "attention":
            self.scorer = keras.layers.Dense(1, dtype=self.dtype_policy, name="scorer")
            self.scorer.build(tuple(shapes[0][:-1]) + (widths[0],))

    def call(self, inputs):
        if not _is_list(inputs):
            self._check_shapes(ops.shape(inputs))  # raises the TypeError
        features = list(inputs)
        if self.projections:
            features = [p(x) for p, x in zip(self.projections, features)]
        if self.mode == "concat":
            return ops.concatenate(features, axis=-1)
        stacked = ops.stack(features, axis=-2)  # (..., sources, width)
        if self.mode == "sum":
            return ops.sum(stacked, axis=-2)
        if self.mode == "mean":
            return ops.mean(stacked, axis=-2)
        if self.mode == "weighted":
            weights = ops.softmax(self.source_logits)[:, None]
        else:
            weights = ops.softmax(self.scorer(stacked), axis=-2)
        return ops.sum(stacked * ops.cast(weights, stacked.dtype), axis=-2)

    def compute_output_shape(self, input_shape):
        shapes = self._check_shapes(input_shape)
        widths = [self.units or shape[-1] for shape in shapes]
        if self.mode == "concat":
            width = None if None in widths else sum(widths)
        else:
            width = widths[0]
        return tuple(shapes[0][:-1]) + (width,)

    def get_config(self):
        config = super().get_config()
        config.update({"mode": self.mode, "units": self.units})
        return config

    def _check_shapes(self, input_shape):
        if not _is_list(input_shape) or not all(_is_list(shape) for shape in input_shape):
            raise TypeError(
                "FeatureFusion expects a list of feature tensors, one per "
                "source backbone. Received: a single input of shape "
                f"{tuple(input_shape)}"
            )
        if len(input_shape) < 1:
            raise ValueError("FeatureFusion needs at least one input. Received: []")
        return [tuple(shape) for shape in input_shape]


def _is_list(value):
    return isinstance(value, (list, tuple))
