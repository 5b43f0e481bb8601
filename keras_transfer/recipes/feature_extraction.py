"""The feature-extraction strategy as a recipe: the frozen backbone runs once
over the data, a head trains on its features, and the two are put back
together."""

from keras_transfer import strategies
from keras_transfer.features import extract_features
from keras_transfer.heads.feature_heads import attach_head, fit_head

__all__ = ["train_on_features"]

# The strategy table holds the defaults, for the command line too.
_DEFAULTS = dict(strategies.get("feature_extraction").defaults)


def train_on_features(
    feature_model,
    train,
    validation_data=None,
    *,
    num_classes,
    epochs=_DEFAULTS["epochs"],
    learning_rate=_DEFAULTS["learning_rate"],
    batch_size=32,
    verbose=0,
    callbacks=None,
    progress=True,
):
    """Feature extraction as a recipe in one call: the frozen backbone runs
    once over the data, not once per epoch; a head (`fit_head`) trains on
    the features; then the two are put back together (`attach_head`).

    Example:

    >>> features = keras_transfer.transfer("mobilenet", weights=None, input_shape=(32, 32, 3))
    >>> x, y = np.random.uniform(0, 255, (8, 32, 32, 3)), np.arange(8) % 2
    >>> history = keras_transfer.recipes.feature_extraction.train_on_features(
    ...     features, (x, y), num_classes=2, epochs=2, progress=False)
    >>> history.model.output.shape[-1], history.phases[0]["name"]
    (2, 'head')

    Args:
        feature_model: a model giving features, e.g. `transfer(backbone)`.
        train: `(images, labels)`, or what `extract_features` takes.
        validation_data: the same, or `None`.
        num_classes: number of classes.
        epochs, learning_rate, batch_size, verbose, callbacks: `fit_head`'s.
        progress: show the extraction's progress.

    Returns:
        The head's `History`, whose `model` is the attached model (images
        to logits), with `phases`.
    """
    cached = [
        None
        if data is None
        else extract_features(feature_model, data, batch_size=batch_size, progress=progress)
        for data in (train, validation_data)
    ]
    head = fit_head(
        cached[0],
        num_classes,
        epochs=epochs,
        validation=cached[1],
        batch_size=batch_size,
        learning_rate=learning_rate,
        verbose=verbose,
        callbacks=callbacks,
    )
    history = head.history
    history.set_model(attach_head(feature_model, head))
    history.phases = [{"name": "head", "first_epoch": 0, "epochs": epochs}]
    return history
