"""From a folder of photos to a file that runs without Keras, offline.

The whole path in five steps: a folder of class sub-folders read by
`ktr.ImageStream`; `ktr.transfer` and `ktr.fine_tune` (its default, the
adaptive recipe, or the fixed one with `--epochs`); `ktr.export` to the
format this backend writes (LiteRT under TensorFlow, ONNX under torch, a
SavedModel under JAX), which checks the file against the Keras model; and
predictions from the exported file alone, with its `labels.txt`, as a phone
or a server would make them.

Reads the ants and bees of ../shared and the smallest ImageNet MobileNet
(v1, alpha 0.25: 0.2 M parameters, a phone's model); writes the export to
--out:

    python examples/folder_to_deployment.py [--image-size 160] [--epochs 2]
"""

import argparse
import pathlib
import sys
import tempfile

import keras
import numpy as np

import keras_transfer as ktr
from keras_transfer.images.decoding import read_image

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "hymenoptera_data"
WEIGHTS = ROOT.parent / "shared" / "weights" / "mobilenet_2_5_224_tf_no_top.h5"
# The format each backend exports (ktr.export says which it can).
FORMATS = {"tensorflow": "litert", "torch": "onnx", "jax": "saved_model"}


def exported_runner(folder, format):
    """A function from one image (pixels 0-255, float32) to probabilities,
    from the exported file alone: no Keras, no keras-transfer."""
    if format == "litert":
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            import tensorflow as tf

            Interpreter = tf.lite.Interpreter
        interpreter = Interpreter(model_path=str(folder / "model.tflite"))
        given = interpreter.get_input_details()[0]
        interpreter.resize_tensor_input(given["index"], [1, *given["shape"][1:]])
        interpreter.allocate_tensors()
        output = interpreter.get_output_details()[0]["index"]

        def run(image):
            interpreter.set_tensor(given["index"], image[None])
            interpreter.invoke()
            return interpreter.get_tensor(output)[0]

        return run
    if format == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(folder / "model.onnx"))
        name = session.get_inputs()[0].name
        return lambda image: session.run(None, {name: image[None]})[0][0]
    import tensorflow as tf

    loaded = tf.saved_model.load(str(folder / "saved_model"))
    return lambda image: loaded.serve(tf.constant(image[None]))[0].numpy()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument(
        "--epochs", type=int, default=None, help="the fixed recipe's (default: the adaptive one)"
    )
    parser.add_argument(
        "--out", type=pathlib.Path, default=None, help="default: a temporary folder"
    )
    args = parser.parse_args(argv)
    if not DATA.is_dir() or not WEIGHTS.is_file():
        print(f"needs ../shared's photos and weights: {DATA} is absent", file=sys.stderr)
        return 2
    size = (args.image_size, args.image_size)
    keras.utils.set_random_seed(0)

    # 1. A folder of class sub-folders, decoded as the batches are needed.
    train = ktr.ImageStream(DATA / "train", size, 32, shuffle=True, seed=0)
    val = ktr.ImageStream(DATA / "val", size, 32, class_names=train.class_names)
    names = train.class_names

    # 2. The pretrained backbone rewired for these classes, and fine-tuned.
    model = ktr.transfer(
        keras.applications.MobileNet,
        len(names),
        weights=str(WEIGHTS),
        input_shape=(*size, 3),
        backbone_kwargs={"alpha": 0.25},
        strategy="fine_tune",
    )
    recipe = {} if args.epochs is None else {"epochs": args.epochs, "freeze_epochs": 1}
    ktr.fine_tune(model, train, validation_data=val, verbose=0, **recipe)
    logits = model.predict(val, verbose=0)
    keras_accuracy = float(np.mean(logits.argmax(-1) == val.labels))

    # 3. The export, checked against the Keras model on the validation photos.
    format = FORMATS[keras.backend.backend()]
    out = args.out or pathlib.Path(tempfile.mkdtemp()) / "export"
    record = ktr.export(model, out, format, class_names=names, check=DATA / "val", overwrite=True)
    print(f"exported {format} to {out}: {record['size_bytes'] / 2**20:.1f} MiB")

    # 4. Predictions from the file alone, as a deployment makes them.
    run = exported_runner(out, format)
    labels = (out / "labels.txt").read_text().split()
    right = 0
    for path, label in zip(val.paths, val.labels):
        probabilities = run(read_image(path, size).astype("float32"))
        right += labels[int(np.argmax(probabilities))] == names[label]
    print(
        f"validation accuracy: keras {keras_accuracy:.3f}, exported file "
        f"{right / len(val.paths):.3f} ({len(val.paths)} photos)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
