"""Fine-tune a keras.applications model on your photos, offline.

The Keras guide's two phases, in keras-transfer: train the head on the
frozen ImageNet MobileNetV2-0.35 (imported from the Keras 2 export in
../shared), then unfreeze its top blocks with BatchNorm kept in inference
mode and train on at a lower rate, with no recompile. The model saves to
`.keras` and reloads with no custom_objects.

    python examples/fine_tune_applications.py [--epochs 5] [--fine-tune-epochs 5]
"""

import argparse
import pathlib
import sys
import tempfile

import keras
import numpy as np

import keras_transfer as ktr

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "hymenoptera_data"
WEIGHTS = ROOT.parent / "shared" / "weights" / "mobilenet_v2_0.35_224_teachable_machine_export.h5"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5, help="head-only epochs")
    parser.add_argument("--fine-tune-epochs", type=int, default=5)
    parser.add_argument("--blocks", type=int, default=2, help="top blocks to unfreeze")
    parser.add_argument("--image-size", type=int, default=160)
    args = parser.parse_args(argv)
    if not DATA.is_dir() or not WEIGHTS.is_file():
        print(f"needs {DATA} and {WEIGHTS} (the shared photos and weights)")
        return 1
    keras.utils.set_random_seed(0)
    size = (args.image_size, args.image_size)
    train, val = (ktr.ImageFolder.load(DATA / split, size) for split in ("train", "val"))
    model = ktr.transfer(
        keras.applications.MobileNetV2,
        num_classes=2,
        weights=str(WEIGHTS),
        backbone_kwargs={"alpha": 0.35},
        input_shape=size + (3,),
        augmentation=[keras.layers.RandomFlip("horizontal"), keras.layers.RandomRotation(0.1)],
    )
    model.compile(
        keras.optimizers.Adam(1e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    fit = dict(validation_data=(val.images, val.labels), batch_size=32, verbose=2)
    model.fit(train.images, train.labels, epochs=args.epochs, **fit)

    ktr.unfreeze(model, blocks=args.blocks, bn="inference")  # takes effect without a recompile
    model.optimizer.learning_rate = 1e-4
    ktr.trainable_summary(model, print_fn=lambda text: print(text.splitlines()[-1]))
    model.fit(
        train.images,
        train.labels,
        epochs=args.epochs + args.fine_tune_epochs,
        initial_epoch=args.epochs,
        **fit,
    )
    accuracy = model.evaluate(val.images, val.labels, verbose=0)[1]

    path = pathlib.Path(tempfile.mkdtemp(prefix="kt-finetune-")) / "model.keras"
    model.save(path)
    same = np.allclose(
        keras.saving.load_model(path).predict(val.images[:8], verbose=0),
        model.predict(val.images[:8], verbose=0),
        atol=1e-5,
    )
    print(
        f"fine-tuned validation accuracy {accuracy:.3f}; reloaded from {path.name}: "
        f"same predictions {same}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
