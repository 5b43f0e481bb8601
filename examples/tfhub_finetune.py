"""Fine-tune a TF-Hub-format MobileNetV2 on ants vs bees, offline.

A TF-Hub model is a SavedModel in TF2's reusable format. This example makes
one, since it cannot download: the ImageNet MobileNetV2 (alpha 0.35, from
the Keras 2 export in ../shared/weights), written by `ktr.hub.export` to
take pixels in [0, 1], as TF-Hub image models do. From there on it is what
a user does with a tfhub.dev or Kaggle handle: `ktr.transfer(handle)` loads
it through `ktr.hub.HubLayer`, and `ktr.fine_tune` trains the head, then the
whole Hub model at a lower rate (BatchNorm inside it in inference mode).
The fine-tuned model is saved to .keras and reloaded.

TF-Hub models need the TensorFlow backend:

    KERAS_BACKEND=tensorflow python examples/tfhub_finetune.py [--epochs 2] [--image-size 160]
        [--handle https://tfhub.dev/...]
"""

import argparse
import os
import pathlib
import sys
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_transfer as ktr  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "hymenoptera_data"
WEIGHTS = ROOT.parent / "shared" / "weights" / "mobilenet_v2_0.35_224_teachable_machine_export.h5"


def export_hub_mobilenet(path):
    """MobileNetV2-0.35 with ImageNet weights, as a Hub image feature vector.

    Returns the Keras model it exported.
    """
    backbone = keras.applications.MobileNetV2(
        alpha=0.35, include_top=False, weights=None, pooling="avg", input_shape=(224, 224, 3)
    )
    ktr.load_legacy_h5(backbone, WEIGHTS)
    hub_style = keras.Sequential(
        [
            keras.Input((None, None, 3)),
            keras.layers.Rescaling(2.0, offset=-1.0),  # Hub's [0, 1] to MobileNet's [-1, 1]
            backbone,
        ]
    )
    ktr.hub.export(hub_style, path)
    return hub_style


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2, help="epochs with the Hub model training")
    parser.add_argument("--freeze-epochs", type=int, default=2, help="epochs of the head alone")
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--handle",
        help="a TF-Hub handle or SavedModel directory of an image "
        "feature vector (default: export MobileNetV2-0.35 and use that)",
    )
    args = parser.parse_args(argv)
    if keras.backend.backend() != "tensorflow":
        print("TF-Hub models need KERAS_BACKEND=tensorflow")
        return 1
    if not DATA.is_dir() or (args.handle is None and not WEIGHTS.is_file()):
        print(f"this example needs {DATA} and {WEIGHTS} (the shared photos and weights)")
        return 1

    keras.utils.set_random_seed(0)
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="kt-hub-"))
    handle = args.handle
    if handle is None:
        handle = str(workdir / "mobilenet_v2_035_feature_vector")
        export_hub_mobilenet(handle)
        print(f"exported a TF-Hub SavedModel to {handle}")

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
    # A handle from tfhub.dev or Kaggle goes in the same place.
    model = ktr.transfer(handle, num_classes=2, input_shape=size + (3,))
    ktr.trainable_summary(model)

    start = time.perf_counter()
    history = ktr.fine_tune(
        model,
        train,
        validation_data=val,
        epochs=args.epochs,
        freeze_epochs=args.freeze_epochs,
        base_lr=2e-3,
        lr_mult=20,
        verbose=2,
    )
    accuracy = history.history["val_accuracy"]
    for phase in history.phases:
        last = phase["first_epoch"] + phase["epochs"] - 1
        print(f"after the {phase['name']} phase: validation accuracy {accuracy[last]:.3f}")
    print(f"fine-tuned in {time.perf_counter() - start:.0f} s")

    path = workdir / "hub_finetuned.keras"
    model.save(path)
    # The graph comes from the handle, not the file: loading needs safe_mode=False.
    reloaded = keras.models.load_model(path, safe_mode=False)
    images, _ = next(iter(val))
    same = np.allclose(
        reloaded.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-5
    )
    print(f"reloaded from {path.name}: same predictions {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
