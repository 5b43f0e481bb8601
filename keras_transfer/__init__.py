"""keras-transfer: transfer learning for image classification on Keras 3.

    import keras_transfer as ktr

The package loads lazily (PEP 562): `import keras_transfer` imports no
backend and changes nothing in Keras, so `keras-transfer --help` is
instant. A name is imported on first use. Imported after Keras (the usual
order), it also registers its layers at once, so `keras.saving.load_model`
needs no `custom_objects`; `keras_transfer.register()` does it explicitly.

The package is one folder per concept (`backbones`, `rates`, `heads`,
`images`, `features`, `recipes`, `deploy`, `layers`, `commands`, `utils`),
each `__init__` a map of it. The module paths of before the folders
(`keras_transfer.callbacks`, `keras_transfer.hub`, ...) still import, as
the same modules.
"""

import importlib
import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0.dev0"

# Public name -> the module that defines it.
_NAMES = {
    "BackboneModel": "backbones.backbone_model",
    "Features": "features",
    "ImageFolder": "images.folder",
    "ImageStream": "images.stream",
    "LRFinderResult": "recipes.lr_finder",
    "TransferReport": "backbones.weights",
    "attach_head": "heads.feature_heads",
    "calibrate": "heads.calibration",
    "export": "deploy.exporter",
    "extract_features": "features",
    "fine_tune": "recipes.fine_tuning",
    "fit_unknown": "heads.unknown",
    "freeze": "rates.freezing",
    "gradual_unfreeze": "recipes.gradual",
    "load_legacy_h5": "backbones.weights",
    "load_weights_npz": "backbones.weights",
    "rank": "features.ranking",
    "lr_find": "recipes.lr_finder",
    "save_weights_npz": "backbones.weights",
    "trainable_summary": "rates.freezing",
    "transfer": "factory",
    "transfer_weights": "backbones.weights",
    "unfreeze": "rates.freezing",
    "unknown_output": "heads.unknown",
}
# The folders, one per concept (each `__init__` is a map of it), and the
# modules at the top.
_SUBMODULES = (
    "backbones",
    "commands",
    "deploy",
    "factory",
    "features",
    "heads",
    "images",
    "layers",
    "rates",
    "recipes",
    "strategies",
    "utils",
)
# The module paths of before the folders (0.1.0.dev0): `ktr.callbacks`,
# `import keras_transfer.callbacks` and `from keras_transfer.hub import
# HubLayer` still work, as the same module objects. `heads`, `recipes` and
# `backbones` are folders now, whose `__init__` holds what the module held.
_MOVED = {
    "adaptive": "recipes.adaptive",
    "augmentation": "recipes.augmentation",
    "backbone_cut": "backbones.cut",
    "backbone_model": "backbones.backbone_model",
    "backbone_resolution": "backbones.resolution",
    "callbacks": "recipes.callbacks",
    "classifier_head": "heads.classifier_head",
    "cli": "commands.cli",
    "demo": "commands.demo_table",
    "exporter": "deploy.exporter",
    "fixed_recipe": "recipes.fixed",
    "freezing": "rates.freezing",
    "gradual": "recipes.gradual",
    "guards": "utils.guards",
    "holdout_judge": "recipes.holdout_judge",
    "hub": "backbones.hub",
    "image_decoding": "images.decoding",
    "image_folder": "images.folder",
    "image_stream": "images.stream",
    "inspection": "deploy.inspection",
    "keras_hub_adapter": "backbones.keras_hub_adapter",
    "labels": "utils.labels",
    "linear_probe": "recipes.linear_probe",
    "lr_finder": "recipes.lr_finder",
    "multi_worker": "utils.multi_worker",
    "optimizers": "rates.optimizers",
    "penalties": "backbones.penalties",
    "precision": "rates.precision",
    "ranking": "features.ranking",
    "rate_multipliers": "rates.rate_multipliers",
    "regularizers": "rates.regularizers",
    "report": "deploy.report",
    "schedules": "recipes.schedules",
    "steps": "recipes.steps",
    "transferability": "features.transferability",
    "weights": "backbones.weights",
}
# The modules whose classes a saved model names (registered on import).
_SERIALIZABLE = (
    "backbones.backbone_model",
    "layers",
    "rates.optimizers",
    "backbones.penalties",
    "recipes.schedules",
    "backbones.hub",
)

# Today's module paths stay public names, until a release removes them.
__all__ = sorted([*_NAMES, *_SUBMODULES, *_MOVED, "register"])


def __getattr__(name):
    if name in _NAMES:
        value = getattr(importlib.import_module(f"{__name__}.{_NAMES[name]}"), name)
    elif name in _SUBMODULES or name in _MOVED:
        value = importlib.import_module(f"{__name__}.{_MOVED.get(name, name)}")
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


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """`import keras_transfer.<old path>` gives the module at its new path
    (one module object, so classes and registrations are not doubled)."""

    def find_spec(self, fullname, path=None, target=None):
        parent, _, name = fullname.rpartition(".")
        if parent == __name__ and name in _MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        return importlib.import_module(f"{__name__}.{_MOVED[spec.name.rpartition('.')[2]]}")

    def exec_module(self, module):
        pass  # imported at its new path already


if not any(type(finder).__name__ == "_MovedModules" for finder in sys.meta_path):
    sys.meta_path.append(_MovedModules())  # once, should the package be reloaded

if "keras" in sys.modules:  # Keras is loaded already: registering costs nothing
    register()
