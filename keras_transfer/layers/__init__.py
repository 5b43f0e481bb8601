from keras_transfer.layers.feature_fusion import FeatureFusion
from keras_transfer.layers.image_preprocessing import ImagePreprocessing
from keras_transfer.layers.inf_normalize import InfNormalize
from keras_transfer.layers.token_pooling import TokenPooling
from keras_transfer.layers.transfer_matrix import TransferMatrix

__all__ = ["FeatureFusion", "ImagePreprocessing", "InfNormalize", "TokenPooling", "TransferMatrix"]
