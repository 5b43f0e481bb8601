"""keras-transfer: transfer learning for image classification on Keras 3."""

from keras_transfer import (
    backbones,
    callbacks,
    heads,
    hub,
    image_folder,
    layers,
    multi_worker,
    optimizers,
    precision,
    regularizers,
    report,
    schedules,
)
from keras_transfer.backbone_model import BackboneModel
from keras_transfer.factory import transfer
from keras_transfer.features import Features, extract_features
from keras_transfer.freezing import freeze, trainable_summary, unfreeze
from keras_transfer.heads import attach_head
from keras_transfer.image_folder import ImageFolder
from keras_transfer.recipes import LRFinderResult, fine_tune, lr_find
from keras_transfer.weights import (
    TransferReport,
    load_legacy_h5,
    load_weights_npz,
    save_weights_npz,
    transfer_weights,
)

__version__ = "0.1.0.dev0"

multi_worker.patch()  # Keras 3 + MultiWorkerMirroredStrategy (TensorFlow backend)
