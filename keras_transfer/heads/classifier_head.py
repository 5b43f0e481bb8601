"""The classifier head: building it (`transfer()`, `fit_head`), finding it in
a model, and setting a linear probe's weights into it (the adaptive
recipe)."""

import keras

from keras_transfer.layers import InfNormalize, TransferMatrix

__all__ = ["build_head", "find_head", "head_layers", "linear_classifier", "set_linear_head"]


def build_head(
    num_classes, head, transfer_matrix, inf_normalize, dropout, activation, pooling, policy
):
    layers = []
    if transfer_matrix is not None:
        layers.append(
            TransferMatrix(
                transfer_matrix,
                activation="relu",
                use_gate=True,
                name="transfer_matrix",
                dtype=policy,
            )
        )
    if inf_normalize:
        layers.append(InfNormalize(name="inf_normalize", dtype=policy))
    if isinstance(head, keras.layers.Layer):
        return layers + [head]
    if num_classes is None:
        return layers
    if pooling is None and not layers:
        raise ValueError(
            "A classifier head needs pooled features. Received: pooling=None with "
            f"num_classes={num_classes}. Use pooling='avg' (or another), or pass "
            "your own `head` layer."
        )
    return layers + head_layers(num_classes, head, dropout, activation, dtype=policy)


def head_layers(num_classes, hidden=None, dropout=0.0, activation=None, dtype=None):
    """The classifier head's layers, the one builder for `transfer()` and
    `ktr.heads.fit_head`: per hidden width `Dense -> BatchNormalization ->
    ReLU -> Dropout`, then `Dropout` and the `classifier` Dense.

    Example:

    >>> [layer.name for layer in keras_transfer.classifier_head.head_layers(3, [8], 0.2)]
    ['hidden_0', 'hidden_0_bn', 'hidden_0_relu', 'hidden_0_dropout', 'dropout', 'classifier']

    Args:
        num_classes: the classifier's width.
        hidden: widths of hidden layers, or `None`.
        dropout: dropout rate before each Dense after the first.
        activation: the classifier's activation (`None`: logits).
        dtype: the dtype policy of every layer but the classifier, whose
            logits stay float32 under mixed precision.
    """
    layers = []
    for index, width in enumerate(hidden or []):
        layers += [
            keras.layers.Dense(width, use_bias=False, name=f"hidden_{index}", dtype=dtype),
            keras.layers.BatchNormalization(name=f"hidden_{index}_bn", dtype=dtype),
            keras.layers.ReLU(name=f"hidden_{index}_relu", dtype=dtype),
            keras.layers.Dropout(dropout, name=f"hidden_{index}_dropout", dtype=dtype),
        ]
    if dropout:
        layers.append(keras.layers.Dropout(dropout, name="dropout", dtype=dtype))
    layers.append(
        keras.layers.Dense(num_classes, activation=activation, dtype="float32", name="classifier")
    )
    return layers


def find_head(model):
    try:
        return model.get_layer("head")
    except ValueError:
        raise ValueError(
            "The adaptive recipe trains a probe on the features that enter the model's "
            "`head`: pass a model built by keras_transfer.transfer(..., num_classes=N), or "
            "a fixed recipe (adaptive=False). Received: a model without a layer named 'head'"
        ) from None


def linear_classifier(model):
    """The head's one weighted layer, a Dense taking the features."""
    weighted = [layer for layer in find_head(model).layers if layer.weights]
    if len(weighted) != 1 or not isinstance(weighted[0], keras.layers.Dense):
        raise ValueError(
            "The adaptive recipe's probe fits a linear classifier: the model's head must be "
            "dropout plus one Dense layer, as transfer(..., num_classes=N) builds it. "
            f"Received: a head with weighted layers {[layer.name for layer in weighted]}; "
            "choose a fixed recipe (adaptive=False)"
        )
    if weighted[0].activation not in (keras.activations.linear, None):
        raise ValueError(
            "The adaptive recipe's probe sets logits: the classifier must have no activation "
            "(transfer(..., classifier_activation=None)). Received: "
            f"activation={weighted[0].activation.__name__}"
        )
    return weighted[0]


def set_linear_head(classifier, probe):
    kernel, bias = classifier.get_weights()
    classifier.set_weights([probe["kernel"].astype(kernel.dtype), probe["bias"].astype(bias.dtype)])
