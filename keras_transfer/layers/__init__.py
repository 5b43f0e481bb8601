"""The method's layers, one per module, each saved and loaded by name.

- `transfer_matrix`: `TransferMatrix`, T = (C/alpha) A^T W.
- `inf_normalize`: `InfNormalize`, division by the L-infinity norm.
- `feature_fusion`: `FeatureFusion`, several backbones' features as one.
- `token_pooling`: `TokenPooling`, a vision transformer's read-out.
- `image_preprocessing`: `ImagePreprocessing`, each family's pixel scaling.
- `position_table`: resampling a position table to a new grid.
- `temperature_scaling`: `TemperatureScaling`, calibrated probabilities.
- `unknown_score`: `UnknownScore`, how much an image looks like the classes.
"""

from keras_transfer.layers.feature_fusion import FeatureFusion
from keras_transfer.layers.image_preprocessing import ImagePreprocessing
from keras_transfer.layers.inf_normalize import InfNormalize
from keras_transfer.layers.temperature_scaling import TemperatureScaling
from keras_transfer.layers.token_pooling import TokenPooling
from keras_transfer.layers.transfer_matrix import TransferMatrix
from keras_transfer.layers.unknown_score import UnknownScore

__all__ = [
    "FeatureFusion",
    "ImagePreprocessing",
    "InfNormalize",
    "TemperatureScaling",
    "TokenPooling",
    "TransferMatrix",
    "UnknownScore",
]
