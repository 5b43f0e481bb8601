"""Quickstart: transfer ImageNet MobileNet features to ants vs bees, offline.

The method in a few lines: a frozen ImageNet backbone gives features `W H`;
a `TransferMatrix` maps them, gated and ReLU'd, into a target space
(`E^ = phi(P * (W H))`); `InfNormalize` divides by the largest entry
(`F* = E^ / ||E^||_inf`); a softmax layer classifies.

Reads the real photos and weights in ../shared (no download):

    python examples/quickstart.py [--epochs 8] [--image-size 160]
"""

import argparse
import pathlib
import sys
import time

import keras

import keras_transfer as kt

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "hymenoptera_data"
WEIGHTS = ROOT.parent / "shared" / "weights" / "mobilenet_2_5_224_tf_no_top.h5"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    if not DATA.is_dir() or not WEIGHTS.is_file():
        print(f"quickstart needs {DATA} and {WEIGHTS} (the shared photos and weights)")
        return 1

    keras.utils.set_random_seed(0)
    size = (args.image_size, args.image_size)
    train, val = (
        keras.utils.image_dataset_from_directory(
            DATA / split, image_size=size, batch_size=args.batch_size,
            shuffle=split == "train", seed=0, verbose=False,
        )
        for split in ("train", "val")
    )
    backbone = keras.applications.MobileNet(
        input_shape=size + (3,), alpha=0.25, include_top=False,
        weights=str(WEIGHTS), pooling="avg",
    )
    backbone.trainable = False

    inputs = keras.Input(size + (3,))  # raw pixels in [0, 255]
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)  # MobileNet's own
    x = backbone(x, training=False)
    x = kt.layers.TransferMatrix(128, activation="relu", use_gate=True)(x)
    x = kt.layers.InfNormalize()(x)
    x = keras.layers.Dropout(0.2)(x)
    outputs = keras.layers.Dense(2, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])

    start = time.perf_counter()
    model.fit(train, validation_data=val, epochs=args.epochs, verbose=2)
    loss, accuracy = model.evaluate(val, verbose=0)
    print(f"validation accuracy {accuracy:.3f} after {args.epochs} epochs "
          f"({time.perf_counter() - start:.0f} s, backend {keras.backend.backend()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
