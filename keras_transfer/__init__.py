"""keras-transfer: transfer learning for image classification on Keras 3."""

from keras_transfer import layers

__version__ = "0.1.0.dev0"
