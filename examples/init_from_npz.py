"""Initialise a target model from a source model's weights saved as .npz.

The method's weight-transfer recipe: train a source model, save its layer
parameters to disk, build the target model (same feature layers, a new
head), initialise it from the file, fit with validation_split=0.2, and
evaluate. Source: digits 0-4 of scikit-learn's bundled digits; target:
digits 5-9 (no download).

    python examples/init_from_npz.py [--epochs 10]
"""

import argparse
import pathlib
import sys
import tempfile

import keras
import numpy as np
from sklearn.datasets import load_digits

import keras_transfer as ktr


def network(num_classes, name):
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dense(32, activation="relu", name="features")(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, name=f"{name}_head")(x), name=name)


def compiled(model):
    model.compile(
        keras.optimizers.Adam(3e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--target-per-class", type=int, default=20)
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)
    digits = load_digits()
    x = (digits.images / 16.0).astype("float32")[..., None]
    y = digits.target
    source, target = y < 5, y >= 5

    teacher = compiled(network(5, "source"))
    teacher.fit(x[source], y[source], epochs=args.epochs, verbose=0)
    path = pathlib.Path(tempfile.mkdtemp(prefix="kt-npz-")) / "source.npz"
    count = ktr.save_weights_npz(teacher, path, layers=["conv1", "conv2", "features"])
    print(f"saved {count:,} source parameters to {path}")

    rng = np.random.default_rng(0)
    idx = np.concatenate(
        [
            rng.choice(np.flatnonzero(y == c), args.target_per_class, replace=False)
            for c in range(5, 10)
        ]
    )
    test = np.setdiff1d(np.flatnonzero(target), idx)
    results = {}
    for init in ("scratch", "npz"):
        keras.utils.set_random_seed(1)
        student = compiled(network(5, "target"))
        if init == "npz":
            print(ktr.load_weights_npz(student, path).summary())
        student.fit(x[idx], y[idx] - 5, epochs=args.epochs, validation_split=0.2, verbose=0)
        results[init] = student.evaluate(x[test], y[test] - 5, verbose=0)[1]
    print(
        f"target test accuracy: from scratch {results['scratch']:.3f}, "
        f"initialised from .npz {results['npz']:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
