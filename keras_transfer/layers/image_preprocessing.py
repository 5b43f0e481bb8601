import keras
from keras import ops

from keras_transfer.utils import _compat
from keras_transfer.utils._options import PREPROCESSING_MODES

__all__ = ["ImagePreprocessing"]

# keras.applications.imagenet_utils' constants, in RGB order.
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)
_MODES = PREPROCESSING_MODES


@keras.saving.register_keras_serializable(package="keras_transfer")
class ImagePreprocessing(keras.layers.Layer):
    """Maps raw RGB pixels in [0, 255] to what a pretrained backbone expects.

    It puts keras.applications' `preprocess_input` inside the model, so a
    saved model takes raw pixels and is never preprocessed twice:

    - `"caffe"`: RGB to BGR, minus the ImageNet mean (VGG, ResNet v1).
    - `"tf"`: scaled to [-1, 1] (MobileNet, Inception, Xception, ResNet v2).
    - `"torch"`: scaled to [0, 1], then standardised per channel (DenseNet).
    - `"unit"`: scaled to [0, 1] (TF-Hub's image convention).
    - `"none"`: unchanged (backbones with built-in preprocessing:
      EfficientNet, EfficientNetV2, ConvNeXt, MobileNetV3).

    Grayscale input (one channel) is repeated to three channels first.

    Example:

    >>> pixels = np.array([[[[0.0, 127.5, 255.0]]]])
    >>> layer = keras_transfer.layers.ImagePreprocessing("tf")
    >>> keras.ops.convert_to_numpy(layer(pixels))
    array([[[[-1.,  0.,  1.]]]], dtype=float32)

    Args:
        mode: One of `"caffe"`, `"tf"`, `"torch"`, `"unit"`, `"none"`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.
    """

    def __init__(self, mode="tf", **kwargs):
        super().__init__(**kwargs)
        if mode not in _MODES:
            raise ValueError(f"`mode` must be one of {_MODES}. Received: mode={mode!r}")
        self.mode = mode
        _compat.mark_built_at_init(self)

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        if x.shape[-1] == 1:
            x = ops.concatenate([x, x, x], axis=-1)
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "unit":
            return x / 255.0
        if self.mode == "torch":
            mean = ops.convert_to_tensor(_TORCH_MEAN, x.dtype)
            std = ops.convert_to_tensor(_TORCH_STD, x.dtype)
            return (x / 255.0 - mean) / std
        if self.mode == "caffe":
            mean = ops.convert_to_tensor(_CAFFE_MEAN_BGR, x.dtype)
            return ops.flip(x, axis=-1) - mean
        return x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (3 if input_shape[-1] == 1 else input_shape[-1],)

    def compute_output_spec(self, inputs):
        return keras.KerasTensor(self.compute_output_shape(inputs.shape), dtype=self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update({"mode": self.mode})
        return config
