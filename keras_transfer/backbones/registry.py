"""The backbone registry: the lookups on the family tables (`families`):
a name to its constructor, a built model to its family, layers to blocks,
and the tables printed."""

import difflib
import importlib
import re

import keras

from keras_transfer.backbones.families import (
    FAMILIES,
    KERAS_HUB_FAMILIES,
    Family,
    KerasHubFamily,
    Variant,
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


_BY_CONSTRUCTOR = {constructor: family for family in FAMILIES for constructor in family.models}


def _key(name):
    return re.sub(r"[\s_\-]", "", name).lower()


_BY_KEY = {_key(constructor): constructor for constructor in _BY_CONSTRUCTOR}
# Common spellings that differ from the constructor's name.
_BY_KEY.update({"inceptionresnet": "InceptionResNetV2", "inception": "InceptionV3"})


def constructor_names():
    """The names of every registered keras.applications constructor."""
    return sorted(_BY_CONSTRUCTOR)


def resolve_name(name):
    """`"resnet50"`, `"mobilenet_v2"`, `"EfficientNetB0"` -> constructor name.

    Raises:
        ValueError: for an unknown name, listing the close matches.
    """
    constructor = _BY_KEY.get(_key(name))
    if constructor is None:
        close = difflib.get_close_matches(_key(name), list(_BY_KEY), n=5, cutoff=0.5)
        close = [_BY_KEY[c] for c in close]
        raise ValueError(
            f"Unknown backbone name. Received: backbone={name!r}. "
            + (f"Did you mean one of {close}? " if close else "")
            + "Registered names: keras.applications constructors such as "
            "'resnet50', 'mobilenet_v2', 'EfficientNetB0' (case and "
            "underscores do not matter); see keras_transfer.backbones."
            "constructor_names()."
        )
    return constructor


def family_of_constructor(constructor_name):
    return _BY_CONSTRUCTOR.get(constructor_name)


def keras_hub_family(backbone):
    """The `KerasHubFamily` of a KerasHub Backbone instance, or `None`."""
    names = [cls.__name__ for cls in type(backbone).__mro__]
    for family in KERAS_HUB_FAMILIES:
        if family.backbone_class in names:
            return family
    return None


def family_of_model(model):
    """The family of a built keras.applications model, from its name."""
    for family in FAMILIES:
        if re.search(family.model_name, model.name, re.IGNORECASE):
            return family
    return None


def constructor(name):
    return getattr(keras.applications, name)


def split_blocks(layers, rules):
    """Groups layers into ordered blocks with a family's rules.

    Args:
        layers: the model's layers, in topological order (`model.layers`).
        rules: `((regex, block name), ...)`.

    Returns:
        A list of `(block name, [layer names])`, from stem to top, in order
        of each block's first layer. Input layers belong to no block.
    """
    compiled = [(re.compile(pattern), name) for pattern, name in rules]
    labels = []
    for layer in layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        label = None
        for pattern, name in compiled:
            match = pattern.search(layer.name)
            if match:
                label = match.expand(name)
                break
        labels.append([layer.name, label])
    # Unnamed layers join the next named block, or the last one at the end.
    following = None
    for entry in reversed(labels):
        if entry[1] is None:
            entry[1] = following
        following = entry[1]
    previous = None
    for entry in labels:
        if entry[1] is None:
            entry[1] = previous
        previous = entry[1]
    blocks = {}
    for layer_name, label in labels:
        blocks.setdefault(label or "features", []).append(layer_name)
    return list(blocks.items())


def table():
    """One row per registered constructor: the facts `keras-transfer backbones`
    prints and the README's backbone table shows.

    Example:

    >>> row = keras_transfer.backbones.table()[0]
    >>> sorted(row)
    ['blocks', 'family', 'input_size', 'min_size', 'name', 'parameters', 'preprocessing']
    """
    return [
        {
            "name": name,
            "family": family.name,
            "input_size": variant.size,
            "min_size": family.min_size,
            "preprocessing": family.preprocessing,
            "blocks": variant.blocks,
            "parameters": variant.parameters,
        }
        for family in FAMILIES
        for name, variant in family.models.items()
    ]


def keras_hub_table():
    """One row per preset of the registered KerasHub families, in `table()`'s
    form (sizes and blocks come with the preset, so they are `None`); empty
    without the keras-hub extra. Imports keras_hub (and so TensorFlow)."""
    if importlib.util.find_spec("keras_hub") is None:
        return []
    keras_hub = importlib.import_module("keras_hub")
    return [
        {
            "name": f"keras_hub:{name}",
            "family": f"{family.name} (KerasHub {family.kind})",
            "input_size": None,
            "min_size": None,
            "preprocessing": "preset",
            "blocks": None,
            "parameters": preset.get("metadata", {}).get("params"),
        }
        for family in KERAS_HUB_FAMILIES
        for name, preset in getattr(keras_hub.models, family.backbone_class).presets.items()
    ]


def markdown_table():
    """`table()` as a Markdown table (the README's is generated from it)."""
    lines = [
        "| backbone | family | input size | min size | preprocessing | blocks | parameters |",
        "| --- | --- | ---: | ---: | --- | ---: | ---: |",
    ]
    for row in table():
        lines.append(
            f"| `{row['name']}` | {row['family']} | {row['input_size']} | "
            f"{row['min_size']} | {row['preprocessing']} | {row['blocks']} | "
            f"{row['parameters'] / 1e6:.1f} M |"
        )
    return "\n".join(lines)
