"""Quickstart: transfer ImageNet MobileNetV2 features to ants vs bees, offline.

One `ktr.transfer()` call: the ImageNet MobileNetV2 (alpha 0.35), imported
from a Keras 2 export, frozen, with its preprocessing inside the model; the
method's head maps its features through a gated `TransferMatrix`
(`E^ = phi(P * (W H))`), divides by the largest entry with `InfNormalize`
(`F* = E^ / ||E^||_inf`), and classifies.

Reads the real photos and weights in ../shared (no download):

    python examples/quickstart.py [--epochs 8] [--image-size 160]
"""

import argparse
import pathlib
import sys
import time

import keras

import keras_transfer as ktr

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "hymenoptera_data"
WEIGHTS = ROOT.parent / "shared" / "weights" / "mobilenet_v2_0.35_224_teachable_machine_export.h5"


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
            DATA / split,
            image_size=size,
            batch_size=args.batch_size,
            shuffle=split == "train",
            seed=0,
            verbose=False,
        )
        for split in ("train", "val")
    )
    model = ktr.transfer(
        keras.applications.MobileNetV2,
        num_classes=2,
        weights=str(WEIGHTS),
        backbone_kwargs={"alpha": 0.35},
        input_shape=size + (3,),
        strategy="feature_extraction",
        transfer_matrix=128,
        inf_normalize=True,
        classifier_activation="softmax",
    )
    ktr.trainable_summary(model, print_fn=lambda text: print(text.splitlines()[-1]))
    model.compile(
        keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )

    start = time.perf_counter()
    model.fit(train, validation_data=val, epochs=args.epochs, verbose=2)
    loss, accuracy = model.evaluate(val, verbose=0)
    print(
        f"validation accuracy {accuracy:.3f} after {args.epochs} epochs "
        f"({time.perf_counter() - start:.0f} s, backend {keras.backend.backend()})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
