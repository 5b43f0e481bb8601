"""keras-transfer: transfer learning for image classification on Keras 3.

    import keras_transfer as ktr

The package loads lazily (PEP 562): `import keras_transfer` imports no
backend and changes nothing in Keras, so `keras-transfer --help` is
instant. A name is imported on first use. Imported after Keras (the usual
order), it also registers its layers at once, so `keras.saving.load_model`
needs no `custom_objects`; `keras_transfer.register()` does it explicitly.
"""

import importlib
import sys

__version__ = "0.1.0.dev0"

# Public name -> the module that defines it.
_NAMES = {
    "BackboneModel": "backbone_model",
    "Features": "features",
    "ImageFolder": "image_folder",
    "ImageStream": "image_stream",
    "LRFinderResult": "lr_finder",
    "TransferReport": "weights",
    "attach_head": "heads",
    "export": "exporter",
    "extract_features": "features",
    "fine_tune": "recipes",
    "freeze": "freezing",
    "gradual_unfreeze": "gradual",
    "load_legacy_h5": "weights",
    "load_weights_npz": "weights",
    "rank": "ranking",
    "lr_find": "lr_finder",
    "save_weights_npz": "weights",
    "trainable_summary": "freezing",
    "transfer": "factory",
    "transfer_weights": "weights",
    "unfreeze": "freezing",
}
_SUBMODULES = (
    "augmentation",
    "backbones",
    "callbacks",
    "classifier_head",
    "demo",
    "exporter",
    "factory",
    "features",
    "freezing",
    "gradual",
    "guards",
    "heads",
    "hub",
    "image_decoding",
    "image_folder",
    "image_stream",
    "inspection",
    "labels",
    "layers",
    "lr_finder",
    "multi_worker",
    "optimizers",
    "penalties",
    "precision",
    "ranking",
    "rate_multipliers",
    "recipes",
    "regularizers",
    "report",
    "schedules",
    "steps",
    "strategies",
    "transferability",
    "weights",
)
# The modules whose classes a saved model names (registered on import).
_SERIALIZABLE = ("backbone_model", "layers", "optimizers", "penalties", "schedules", "hub")

__all__ = sorted([*_NAMES, *_SUBMODULES, "register"])


def __getattr__(name):
    if name in _NAMES:
        value = getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


def register():
    """Registers the library's layers, optimizers and regularizers with Keras,
    so `keras.saving.load_model` needs no `custom_objects`. Imports Keras."""
    for module in _SERIALIZABLE:
        importlib.import_module(f"{__name__}.{module}")


if "keras" in sys.modules:  # Keras is loaded already: registering costs nothing
    register()
