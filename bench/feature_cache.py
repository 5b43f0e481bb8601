"""Time to accuracy: the Keras-guide frozen phase against the feature store.

On ../shared/data/hymenoptera_data, with the real ImageNet MobileNetV2-0.35
(imported from the Keras 2 export in ../shared/weights), at 224 px:

  (a) the Keras guide's frozen phase: the backbone runs inside the training
      loop (training=False) for 10 epochs;
  (b) keras-transfer: extract once to a store, then 10 epochs of the same
      head on the cached features;
  (c) (b) again: a cache hit.

Prints wall times, validation accuracies and the ratios a/b and a/c.

    KERAS_BACKEND=tensorflow python bench/feature_cache.py [--epochs 10]
"""

import argparse
import functools
import pathlib
import shutil
import tempfile
import time

import keras
import numpy as np

import keras_transfer as ktr

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "hymenoptera_data"
WEIGHTS = ROOT.parent / "shared" / "weights" / "mobilenet_v2_0.35_224_teachable_machine_export.h5"
SIZE = 224


def backbone():
    return ktr.transfer(
        functools.partial(keras.applications.MobileNetV2, alpha=0.35),
        weights=str(WEIGHTS),
        input_shape=(SIZE, SIZE, 3),
    )


def head(width):
    inputs = keras.Input((width,))
    x = keras.layers.Dropout(0.2)(inputs)
    return keras.Model(inputs, keras.layers.Dense(2)(x))


def compile_(model):
    model.compile(
        keras.optimizers.Adam(1e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def guide_frozen_phase(epochs, batch_size):
    """(a): images are decoded once (as the guide's cached tf.data would be);
    the frozen backbone runs on every batch of every epoch."""

    def load(split):
        data = keras.utils.image_dataset_from_directory(
            DATA / split, image_size=(SIZE, SIZE), batch_size=64, shuffle=False, verbose=False
        )
        xs, ys = zip(*[(np.asarray(x), np.asarray(y)) for x, y in data])
        return np.concatenate(xs), np.concatenate(ys)

    (x_train, y_train), (x_val, y_val) = load("train"), load("val")
    start = time.perf_counter()
    features = backbone()
    inputs = keras.Input((SIZE, SIZE, 3))
    model = compile_(keras.Model(inputs, head(features.output.shape[-1])(features(inputs))))
    model.fit(
        x_train,
        y_train,
        batch_size=batch_size,
        epochs=epochs,
        verbose=0,
        validation_data=(x_val, y_val),
    )
    accuracy = model.evaluate(x_val, y_val, verbose=0)[1]
    return time.perf_counter() - start, accuracy


def cached(epochs, batch_size, store):
    """(b) and (c): extract (or hit the store), then train the head."""
    start = time.perf_counter()
    features = backbone()
    train = ktr.extract_features(
        features, DATA / "train", batch_size=100, cache=store / "train", progress=False
    )
    val = ktr.extract_features(
        features, DATA / "val", batch_size=100, cache=store / "val", progress=False
    )
    # The same head as (a) (dropout 0.2, then Dense; Adam 1e-3), validated
    # every epoch, trained by the library's own fit_head.
    model = ktr.heads.fit_head(
        train,
        2,
        epochs=epochs,
        validation=val,
        batch_size=batch_size,
        learning_rate=1e-3,
        dropout=0.2,
    )
    accuracy = model.evaluate(np.asarray(val.x), val.labels, verbose=0)[1]
    return time.perf_counter() - start, accuracy


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    if not DATA.is_dir() or not WEIGHTS.is_file():
        raise SystemExit(f"needs {DATA} and {WEIGHTS}")
    keras.utils.set_random_seed(0)
    store = pathlib.Path(tempfile.mkdtemp(prefix="kt-bench-"))
    try:
        wall_a, acc_a = guide_frozen_phase(args.epochs, args.batch_size)
        keras.utils.set_random_seed(0)
        wall_b, acc_b = cached(args.epochs, args.batch_size, store)
        keras.utils.set_random_seed(0)
        wall_c, acc_c = cached(args.epochs, args.batch_size, store)
    finally:
        shutil.rmtree(store)
    print(f"backend {keras.backend.backend()}, {args.epochs} epochs, batch {args.batch_size}")
    print(f"(a) Keras-guide frozen phase : {wall_a:6.1f} s, val acc {acc_a:.3f}")
    print(f"(b) extract once + head      : {wall_b:6.1f} s, val acc {acc_b:.3f}")
    print(f"(c) cache hit + head         : {wall_c:6.1f} s, val acc {acc_c:.3f}")
    print(
        f"speed-up a/b {wall_a / wall_b:.1f}x (bar 5x), a/c {wall_a / wall_c:.1f}x (bar 20x); "
        f"accuracy b-a {100 * (acc_b - acc_a):+.1f} points (bar >= -1)"
    )


if __name__ == "__main__":
    main()
