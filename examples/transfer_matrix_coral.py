"""TransferMatrix with a closed-form CORAL start, for a shifted target domain.

A CNN learns the ten digits of scikit-learn's bundled scans (the source
domain). The target domain is the same task under a shift the network never
saw: faded, brighter, noisy scans, with no labels used. `TransferMatrix.
from_features(target, source, method="coral")` whitens the target features
with their own covariance and re-colours them with the source's (Sun et
al., 2016), so the source classifier reads them again, in closed form, with
no training. Offline.

    python examples/transfer_matrix_coral.py [--epochs 20]
"""

import argparse
import sys

import keras
import numpy as np
from sklearn.datasets import load_digits

import keras_transfer as ktr


def shifted(images, rng):
    """The target domain: lower contrast, brighter, noisy."""
    return np.clip(0.45 * images + 110 + rng.normal(0, 12, images.shape), 0, 255).astype("float32")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    digits = load_digits()
    images = (digits.images[..., None] * (255.0 / 16.0)).astype("float32")
    order = rng.permutation(len(images))
    source, target = order[:900], order[900:]
    x_source, y_source = images[source], digits.target[source]
    x_target, y_target = shifted(images[target], rng), digits.target[target]

    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu")(x)
    features = keras.layers.GlobalAveragePooling2D()(x)
    extractor = keras.Model(inputs, features)
    classifier = keras.layers.Dense(10)
    model = keras.Model(inputs, classifier(features))
    model.compile(
        keras.optimizers.Adam(3e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x_source, y_source, epochs=args.epochs, batch_size=32, verbose=0)

    f_source = np.asarray(extractor.predict(x_source, verbose=0))
    f_target = np.asarray(extractor.predict(x_target, verbose=0))  # no target labels used

    def accuracy(f):
        logits = keras.ops.convert_to_numpy(classifier(f))
        return float(np.mean(logits.argmax(-1) == y_target))

    coral = ktr.layers.TransferMatrix.from_features(f_target, f_source, method="coral", ridge=1.0)
    source_acc = model.evaluate(x_source, y_source, verbose=0)[1]
    print(f"source domain accuracy {source_acc:.3f}")
    print(
        f"shifted target: no adaptation {accuracy(f_target):.3f}, "
        f"TransferMatrix (CORAL) {accuracy(keras.ops.convert_to_numpy(coral(f_target))):.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
