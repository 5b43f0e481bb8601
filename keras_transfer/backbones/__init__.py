"""Backbones: what `transfer()` takes, made into a model that knows its blocks.

- `families`: the tables, as data: a row per keras.applications and per
  KerasHub family. A new family is a new row.
- `registry`: the lookups on them (a name to its constructor, a model to
  its family, layers to blocks); its names also answer here, as when
  `keras_transfer.backbones` was that module.
- `resolution`: a name, a model, a KerasHub preset or a TF-Hub handle, to
  a functional model (`keras_hub_adapter`, `hub`'s `HubLayer`).
- `cut`: the cut at the feature tap(s), and pooling.
- `backbone_model`: `BackboneModel`, with its blocks, BatchNorm policy and
  starting point (`penalties`, the L2-SP terms it saves).
- `weights`: weight transfer between models, `.npz`, Keras 2 `.h5`.
"""

from keras_transfer.backbones import registry

__all__ = ["registry"]


def __getattr__(name):
    # `keras_transfer.backbones` was the registry module: its names answer here.
    if name in registry.__all__:
        return getattr(registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *registry.__all__})
