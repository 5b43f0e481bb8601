"""Training recipes on a small transfer task: lr_find, fine_tune, GradualUnfreezing.

Source: a small CNN trained on digits 0-4 of scikit-learn's bundled digits;
target: digits 5-9 with a few labelled images per class (no download). The
source network becomes the backbone of `ktr.transfer`, and three recipes
adapt it:

  1. `ktr.lr_find`, which leaves the model exactly as it was (its suggestion
     is printed; the recipes below use fixed rates, so the run is the same
     on every backend);
  2. `ktr.fine_tune`: a head-only phase, then every block with per-block
     learning rates under a one-cycle schedule;
  3. `GradualUnfreezing` inside one `fit`, beside `ReduceLROnPlateau`, with
     L2-SP pulling the backbone toward its source weights.

    python examples/training_recipes.py [--epochs 6] [--per-class 20] [--source-epochs 10]
"""

import argparse
import sys

import keras
import numpy as np
from sklearn.datasets import load_digits

import keras_transfer as ktr

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def source_network():
    inputs = keras.Input((8, 8, 3))
    x = inputs
    for index, width in enumerate((16, 32, 32)):
        x = keras.layers.Conv2D(width, 3, padding="same", name=f"conv{index}")(x)
        x = keras.layers.BatchNormalization(name=f"bn{index}")(x)
        x = keras.layers.ReLU(name=f"relu{index}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(5, name="digits_0_4")(x), name="source")


def target_model(source):
    # The source saw pixels / 255: the "unit" preprocessing, inside the model.
    return ktr.transfer(
        source, 5, preprocessing="unit", regularization=ktr.regularizers.L2SP(alpha=1e-3, beta=1e-4)
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--source-epochs", type=int, default=10)
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)
    digits = load_digits()
    # 8x8 grey digits as RGB pixels in [0, 255], like photos.
    x = np.repeat(digits.images[..., None] * (255 / 16), 3, axis=-1).astype("float32")
    y = digits.target

    source = source_network()
    source.compile(keras.optimizers.Adam(3e-3), LOSS, metrics=["accuracy"])
    source.fit(x[y < 5] / 255, y[y < 5], epochs=args.source_epochs, batch_size=32, verbose=0)

    rng = np.random.default_rng(0)
    train = np.concatenate(
        [rng.choice(np.flatnonzero(y == c), args.per_class, replace=False) for c in range(5, 10)]
    )
    test = np.setdiff1d(np.flatnonzero(y >= 5), train)
    data, held_out = (x[train], y[train] - 5), (x[test], y[test] - 5)

    model = target_model(source)
    model.compile(keras.optimizers.Adam(1e-3), LOSS, metrics=["accuracy"])
    before = [w.copy() for w in model.get_weights()]
    found = ktr.lr_find(model, data, start=1e-5, end=1.0, steps=40, batch_size=16)
    unchanged = all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    print(
        f"lr_find: suggestion {found.suggestion:.1e} over {len(found.losses)} steps; "
        f"weights restored: {unchanged}"
    )

    history = ktr.fine_tune(
        model,
        data,
        validation_data=held_out,
        epochs=args.epochs,
        freeze_epochs=3,
        base_lr=1e-2,
        batch_size=16,
        verbose=0,
    )
    fine_tuned = history.history["val_accuracy"][-1]
    print(
        f"fine_tune: phases {[p['name'] for p in history.phases]}, "
        f"held-out accuracy {fine_tuned:.3f}"
    )

    keras.utils.set_random_seed(0)
    model = target_model(source)
    model.compile(keras.optimizers.Adam(3e-3), LOSS, metrics=["accuracy"])
    history = model.fit(
        *data,
        validation_data=held_out,
        epochs=args.epochs + 3,
        batch_size=16,
        verbose=0,
        callbacks=[
            ktr.callbacks.GradualUnfreezing(start_epoch=3, lr_factor=0.5, verbose=0),
            keras.callbacks.ReduceLROnPlateau("loss", patience=1),
        ],
    )
    gradual = history.history["val_accuracy"][-1]
    ktr.trainable_summary(model)
    print(f"GradualUnfreezing: held-out accuracy {gradual:.3f}")
    print(
        f"target held-out accuracy with {args.per_class} images per class: "
        f"fine_tune {fine_tuned:.3f}, gradual unfreezing {gradual:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
