"""Heads: the classifier inside a model, and heads trained on features.

- `classifier_head`: the in-model head (`transfer()` builds it, the
  adaptive recipe reads and sets it).
- `feature_heads`: a small Keras head (`fit_head`), scikit-learn's SVM and
  logistic regression, and `attach_head`; their names are also this
  package's. The recipe that trains one on a frozen backbone is
  `recipes.feature_extraction`.
- `calibration`: temperature scaling fitted on held-out images
  (`calibrate`), the expected calibration error and its bins.
- `unknown`: the "unknown" score and its threshold (`fit_unknown`,
  `unknown_output`).
"""

import importlib
import warnings

from keras_transfer.heads.feature_heads import (
    COPY_BYTES,
    LogisticHead,
    SVMHead,
    attach_head,
    fit_head,
)

__all__ = ["COPY_BYTES", "LogisticHead", "SVMHead", "attach_head", "fit_head"]


def __getattr__(name):
    # Moved beside the other recipes; the old path warns until a release drops it.
    if name == "train_on_features":
        warnings.warn(
            "`keras_transfer.heads.train_on_features` moved to "
            "`keras_transfer.recipes.feature_extraction.train_on_features`.",
            DeprecationWarning,
            stacklevel=2,
        )
        module = importlib.import_module("keras_transfer.recipes.feature_extraction")
        return module.train_on_features
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
