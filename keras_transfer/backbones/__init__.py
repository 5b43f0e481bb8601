"""Backbones: what `transfer()` takes, made into a model that knows its blocks.

- `families`: the tables, as data: a row per keras.applications and per
  KerasHub family. A new family is a new row.
- `registry`: the lookups on them (a name to its constructor, a model to
  its family, layers to blocks); its names are also this package's.
- `resolution`: a name, a model, a KerasHub preset or a TF-Hub handle, to
  a functional model (`keras_hub_adapter`, `hub`'s `HubLayer`).
- `cut`: the cut at the feature tap(s), and pooling.
- `backbone_model`: `BackboneModel`, with its blocks, BatchNorm policy and
  starting point (`penalties`, the L2-SP terms it saves).
- `weights`: weight transfer between models, `.npz`, Keras 2 `.h5`.
"""

from keras_transfer.backbones.registry import (
    FAMILIES,
    KERAS_HUB_FAMILIES,
    Family,
    KerasHubFamily,
    Variant,
    constructor,
    constructor_names,
    family_of_constructor,
    family_of_model,
    keras_hub_family,
    keras_hub_table,
    markdown_table,
    resolve_name,
    split_blocks,
    table,
)

__all__ = [
    "FAMILIES",
    "KERAS_HUB_FAMILIES",
    "Family",
    "KerasHubFamily",
    "Variant",
    "constructor",
    "constructor_names",
    "family_of_constructor",
    "family_of_model",
    "keras_hub_family",
    "keras_hub_table",
    "markdown_table",
    "resolve_name",
    "split_blocks",
    "table",
]
