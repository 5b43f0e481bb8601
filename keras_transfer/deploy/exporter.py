"""`ktr.export`: a trained model to LiteRT, ONNX or a TF SavedModel, with its
labels beside it and a parity check against the Keras model.

Built on Keras's own `model.export` (and, for quantization, on the LiteRT
converter it drives, or for int8 on LiteRT's `ai-edge-quantizer`); nothing
here serializes a model. After writing, the exported file is run in its own
runtime (`ai-edge-litert`'s interpreter or TensorFlow's, `onnxruntime`,
`tf.saved_model.load`) on check images, and compared with the Keras model:
top-1 agreement, the largest probability difference, each one's accuracy,
the file size and the median latency of one image. The export folder holds
the model file, `labels.txt` and `export.json`; it is written to a hidden
sibling and swapped into place, so a failed check leaves nothing behind.
"""

import json
import pathlib
import re
import statistics
import time

import keras
import numpy as np

from keras_transfer.deploy import report
from keras_transfer.heads.unknown import unknown_output
from keras_transfer.images.decoding import read_images
from keras_transfer.images.folder import image_files, scan
from keras_transfer.layers import TemperatureScaling
from keras_transfer.utils._options import EXPORT_BACKENDS as BACKENDS
from keras_transfer.utils._options import EXPORT_FORMATS as FORMATS
from keras_transfer.utils._options import QUANTIZATIONS

__all__ = [
    "BACKENDS",
    "CALIBRATION_IMAGES",
    "CHECK_IMAGES",
    "FORMATS",
    "MIN_AGREEMENT",
    "QUANTIZATIONS",
    "export",
]
_FILES = {"litert": "model.tflite", "onnx": "model.onnx", "saved_model": "saved_model"}
# Parity: at most this many check (and calibration) images; a float export
# must give the Keras model's top class on all but 1% of them. The largest
# probability difference is recorded: float16 weights moved one of 153
# ants/bees photos by 0.011, with every top class the same.
CHECK_IMAGES = 200
MIN_AGREEMENT = 0.99
# int8's representative images: the LiteRT guide asks for 100 to 500.
CALIBRATION_IMAGES = 500
# int8 calibration runs this many images a step. ai-edge-quantizer keeps a
# moving average of each step's ranges: one image a step squeezed the
# logits' range until confident outputs read 0.50 (ants/bees).
_CALIBRATION_BATCH = 32
_LATENCY_RUNS = 20


def export(
    model,
    path,
    format="litert",
    *,
    quantize="none",
    class_names=None,
    calibration=None,
    check=None,
    max_drop=0.01,
    overwrite=False,
    source=None,
):
    """Exports `model` for a phone or a server, and checks the export.

    The exported model takes what the Keras model takes (pixels 0-255 of
    its image size, float32, preprocessing inside) and gives the same
    outputs. The folder `path` receives the model file (`model.tflite`,
    `model.onnx` or `saved_model/`), `labels.txt` (one class name a line,
    in output order) and `export.json` (input, output, format,
    quantization, size, origin, and the parity check's figures).

    Example:

    >>> import tempfile, pathlib
    >>> model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
    ...                           keras.layers.Dense(2, activation="softmax")])
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "litert"
    >>> record = keras_transfer.export(model, out, "litert")  # doctest: +SKIP
    >>> record["parity"]["agreement"]  # doctest: +SKIP
    1.0

    Args:
        model: a Keras image classifier (one image input, one output).
        path: the export folder; it must not exist, or hold an earlier
            export, replaced only with `overwrite`.
        format: `"litert"`, `"onnx"` or `"saved_model"`. Keras exports
            LiteRT from the TensorFlow backend, ONNX from TensorFlow or
            torch, SavedModel from TensorFlow or JAX (see `BACKENDS`).
        quantize: LiteRT only: `"none"`, `"float16"` (weights),
            `"dynamic"` (int8 weights, float activations) or `"int8"`
            (integer weights and activations, calibrated on
            `calibration`, by `ai-edge-quantizer`; float32 input and
            output).
        class_names: the classes in output order (default `"0"`, `"1"`...).
        calibration: int8's representative images: a `uint8` array
            `(N, height, width, 3)` or a folder of photos (any layout, no
            labels needed). At most `CALIBRATION_IMAGES` are used.
        check: the parity check's images: `(images, labels)`, images
            alone, or a folder of class sub-folders named as
            `class_names`. Default: the calibration images, or else a few
            synthetic ones (agreement only, no accuracy).
        max_drop: a quantized export whose accuracy on `check` is more
            than this below the Keras model's is an error (default 0.01).
        overwrite: replace an earlier export at `path`.
        source: where the model came from, for `export.json`.

    Returns:
        The `export.json` record, as a dict.

    Raises:
        ValueError: bad arguments, a format the backend cannot export, or
            a failed parity check (nothing is written then).
    """
    backend = keras.backend.backend()
    _check_arguments(model, format, quantize, calibration, max_drop, backend)
    out = report.output_dir(path, overwrite, argument="path")
    size = tuple(int(s) for s in model.input_shape[1:3])
    names = [str(n) for n in class_names] if class_names is not None else None
    outputs = int(model.outputs[0].shape[-1])
    names = names or [str(i) for i in range(outputs)]
    if len(names) != outputs:
        raise ValueError(
            f"`class_names` must name the model's {outputs} outputs. Received: {len(names)} "
            f"names ({names[:5]})"
        )
    calibration_images, calibration_from = _calibration(calibration, size)
    images, labels, check_from = _check_images(check, size, names, calibration_images)
    converter = _converter_args(quantize)
    # A model with an unknown score exports it as a second named output.
    scored = unknown_output(model)
    exported = scored or model
    output_names = list(scored.output) if scored is not None else None
    # Keras's outputs first: this also calls a freshly loaded model, which
    # the ONNX exporter needs.
    expected = _as_list(exported.predict(images.astype("float32"), verbose=0), output_names)
    with report.staging(out, overwrite) as stage:
        file = stage / _FILES[format]
        start = time.perf_counter()
        keras_format = "tf_saved_model" if format == "saved_model" else format
        exported.export(str(file), format=keras_format, verbose=False, **converter)
        if format == "onnx" and output_names is not None:
            _name_onnx_outputs(file, output_names)
        if quantize == "int8":
            _quantize_int8(file, calibration_images)
        export_seconds = time.perf_counter() - start
        (stage / "labels.txt").write_text("".join(f"{name}\n" for name in names))
        run = _runtime(format, file, output_names)
        threshold = None if scored is None else model.get_layer("unknown_score").threshold
        parity = _parity(model, run, images, labels, expected, quantize, max_drop, threshold)
        parity["images_from"] = check_from
        record = {
            "format": format,
            "file": _FILES[format],
            "quantization": quantize,
            "size_bytes": _size(file),
            "input": {
                "shape": [None, *size, 3],
                "dtype": "float32",
                "values": "RGB pixels 0-255; the preprocessing is inside the model",
            },
            "output": {
                "shape": [None, outputs],
                "meaning": _meaning(model),
                "labels": "labels.txt",
            },
            # The second named output, `unknown_score`: an image scoring
            # below the threshold is from none of the classes.
            "unknown": None
            if scored is None
            else {
                "output": "unknown_score",
                "shape": [None],
                "threshold": threshold,
                "outputs": output_names,
            },
            # The model's own temperature (`fit` fits one), inside the file.
            "temperature": next(
                (l.temperature for l in model.layers if isinstance(l, TemperatureScaling)), None
            ),
            "class_names": names,
            "calibration": None
            if calibration_images is None
            else {"images": len(calibration_images), "from": calibration_from},
            "parity": parity,
            "runtime": run.name,
            "source": None if source is None else str(source),
            "exported_under": {"backend": backend, "keras": keras.__version__},
            "export_seconds": round(export_seconds, 2),
        }
        report.write_json(stage / "export.json", record)
    return record


def _check_arguments(model, format, quantize, calibration, max_drop, backend):
    if format not in BACKENDS:
        raise ValueError(f"`format` must be one of {list(FORMATS)}. Received: format={format!r}")
    if quantize not in QUANTIZATIONS:
        raise ValueError(
            f"`quantize` must be one of {list(QUANTIZATIONS)}. Received: quantize={quantize!r}"
        )
    if quantize != "none" and format != "litert":
        raise ValueError(
            f"`quantize` applies to LiteRT; {format} exports float32. Received: "
            f"format={format!r}, quantize={quantize!r}"
        )
    if quantize == "int8" and calibration is None:
        raise ValueError(
            "`quantize='int8'` needs `calibration` images (an array, or a folder of photos; "
            "no labels needed) to set the activations' ranges. Received: calibration=None"
        )
    if isinstance(max_drop, bool) or not isinstance(max_drop, (int, float)) or max_drop < 0:
        raise ValueError(f"`max_drop` must be a number >= 0. Received: max_drop={max_drop!r}")
    if backend not in BACKENDS[format]:
        raise ValueError(
            f"format={format!r} is exported from the {' or '.join(BACKENDS[format])} backend, "
            f"not {backend}: save the model (model.save('model.keras'); the file is "
            f"backend-neutral) and export it with KERAS_BACKEND={BACKENDS[format][0]}, e.g. "
            f"`keras-transfer export model.keras --format {format}`, which chooses it. "
            f"Received: backend {backend!r}"
        )
    if len(model.inputs) != 1 or len(model.inputs[0].shape) != 4:
        raise ValueError(
            "`model` must take one batch of images (batch, height, width, channels). "
            f"Received: inputs shaped {[tuple(i.shape) for i in model.inputs]}"
        )


def _converter_args(quantize):
    """The LiteRT converter's settings for `quantize` (int8 is made from
    the float file: `_quantize_int8`)."""
    if quantize in ("none", "int8"):
        return {}
    import tensorflow as tf

    args = {"optimizations": [tf.lite.Optimize.DEFAULT]}
    if quantize == "float16":
        args["target_spec"] = {"supported_types": [tf.float16]}
    return args


def _quantize_int8(file, calibration):
    """Rewrites the float LiteRT `file` with int8 weights and activations
    (float32 input and output), calibrated on `calibration` images.

    Weights are per channel, as the LiteRT converter makes them, except a
    `CONV_2D`'s, which are per tensor: the converter's all-per-channel file of
    MobileNetV2-0.35 is 0.40x its float32 file, 170 kB of it scales and
    zero points; this one is 0.33x. Depthwise convolutions keep per-channel
    weights: with every weight per tensor, ants/bees accuracy fell from 0.915
    to 0.556.
    """
    import contextlib
    import io

    try:
        from ai_edge_quantizer import qtyping, quantizer
    except ImportError as error:
        raise ImportError(
            "`quantize='int8'` needs ai-edge-quantizer: pip install 'keras-transfer[export]'"
        ) from error
    from ai_edge_litert.interpreter import Interpreter

    float_model = pathlib.Path(file).read_bytes()
    recipe = quantizer.Quantizer(float_model)
    granularity = qtyping.QuantGranularity
    recipe.add_static_config(".*", "*", 8, 8, granularity.CHANNELWISE)
    recipe.add_static_config(".*", "CONV_2D", 8, 8, granularity.TENSORWISE)
    for end in ("INPUT", "OUTPUT"):
        recipe.update_quantization_recipe(".*", end, algorithm_key="no_quantize")
    interpreter = Interpreter(model_content=float_model)
    key, entry = next(iter(interpreter.get_signature_list().items()))
    # The unknown score, a quadratic form in the features, stays float: in
    # int8 its last op clipped it at 0 (areas under the ROC curve 0.97 ->
    # 0.72 on ants/bees against textures).
    if "unknown_score" in entry["outputs"]:
        name = interpreter.get_signature_runner(key).get_output_details()["unknown_score"]["name"]
        for regex in (".*unknown_score.*", re.escape(name)):
            recipe.update_quantization_recipe(regex, "*", algorithm_key="no_quantize")
    steps = [
        {entry["inputs"][0]: calibration[i : i + _CALIBRATION_BATCH].astype("float32")}
        for i in range(0, len(calibration), _CALIBRATION_BATCH)
    ]
    with contextlib.redirect_stderr(io.StringIO()):  # its progress bars
        ranges = recipe.calibrate({key: steps})
        quantized = recipe.quantize(ranges, enable_progress_bar=False, enable_progress_report=False)
    pathlib.Path(file).write_bytes(quantized.quantized_model)


def _calibration(calibration, size):
    """`(uint8 images, where from)`: at most `CHECK_IMAGES`, spread evenly."""
    if calibration is None:
        return None, None
    if isinstance(calibration, (str, pathlib.Path)):
        root = pathlib.Path(calibration)
        if not root.is_dir():
            raise FileNotFoundError(
                f"`calibration` must be a folder of photos. Received: calibration={str(root)!r}"
            )
        images, _ = read_images(_spread(image_files(root), CALIBRATION_IMAGES), size)
        if images is None:
            raise ValueError(
                f"No file under {str(root)!r} decodes as an image. Received: "
                f"calibration={str(root)!r}"
            )
        return images, str(root)
    images = np.asarray(calibration)
    if images.ndim != 4 or images.shape[1:3] != size or not len(images):
        raise ValueError(
            f"`calibration` images must be shaped (N, {size[0]}, {size[1]}, 3), the model's "
            f"input. Received: shape {images.shape}"
        )
    return images[_spread(np.arange(len(images)), CALIBRATION_IMAGES)], "an array"


def _check_images(check, size, names, calibration):
    """`(images, labels or None, where from)` for the parity check."""
    if check is None:
        if calibration is not None:
            return calibration, None, "the calibration images"
        # Smooth gradients and noise: agreement and probabilities, no accuracy.
        rng = np.random.default_rng(0)
        ramp = np.linspace(0, 255, size[1])[None, None, :, None]
        images = np.concatenate(
            [
                np.broadcast_to(ramp * rng.uniform(0.2, 1, (4, 1, 1, 3)), (4, *size, 3)),
                rng.uniform(0, 255, (4, *size, 3)),
            ]
        )
        return images.astype("uint8"), None, "8 synthetic images"
    if isinstance(check, (str, pathlib.Path)):
        _, paths, labels = scan(check, names, argument="check")
        chosen = _spread(np.arange(len(paths)))
        images, kept = read_images([paths[i] for i in chosen], size, np.asarray(labels)[chosen])
        if images is None:
            raise ValueError(f"No image under {str(check)!r} decodes. Received: check={check!r}")
        return images, kept, str(check)
    images, labels = check if isinstance(check, tuple) else (check, None)
    images = np.asarray(images)[:CHECK_IMAGES]
    if images.ndim != 4 or images.shape[1:3] != size:
        raise ValueError(
            f"`check` images must be shaped (N, {size[0]}, {size[1]}, 3), the model's input. "
            f"Received: shape {images.shape}"
        )
    labels = None if labels is None else np.asarray(labels).reshape(-1)[: len(images)]
    return images, labels, "an array"


def _spread(items, most=CHECK_IMAGES):
    """At most `most` of `items`, evenly spaced (every class of a sorted
    folder is represented)."""
    if len(items) <= most:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, most).astype(int)]


class _Runtime:
    """Runs an exported file, one image at a time: `(probabilities, seconds)`."""

    def __init__(self, name, run_one):
        self.name, self.run_one = name, run_one


def _as_list(outputs, names):
    """The model's outputs as a list of float64 arrays, in `names`' order."""
    if names is None:
        return [np.asarray(outputs, "float64")]
    return [np.asarray(outputs[name], "float64") for name in names]


def _runtime(format, file, names=None):
    """A `_Runtime` whose `run_one` gives a list of outputs: the model's one
    output, or those named `names`, in that order."""
    if format == "litert":
        try:
            from ai_edge_litert.interpreter import Interpreter

            name = "ai-edge-litert"
        except ImportError:
            import tensorflow as tf

            Interpreter, name = tf.lite.Interpreter, "tensorflow.lite"
        interpreter = Interpreter(model_path=str(file))
        if names is not None:  # several outputs: by the signature's names
            runner = interpreter.get_signature_runner()
            key = next(iter(runner.get_input_details()))

            def run_one(image):
                out = runner(**{key: image[None].astype("float32")})
                return [out[n][0] for n in names]

            return _Runtime(name, run_one)
        given = interpreter.get_input_details()[0]
        interpreter.resize_tensor_input(given["index"], [1, *given["shape"][1:]])
        interpreter.allocate_tensors()
        output = interpreter.get_output_details()[0]["index"]

        def run_one(image):
            interpreter.set_tensor(given["index"], image[None].astype(given["dtype"]))
            interpreter.invoke()
            return [interpreter.get_tensor(output)[0]]

        return _Runtime(name, run_one)
    if format == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(file), providers=["CPUExecutionProvider"])
        input_name = session.get_inputs()[0].name
        return _Runtime(
            "onnxruntime",
            lambda image: [
                o[0] for o in session.run(names, {input_name: image[None].astype("float32")})
            ],
        )
    import tensorflow as tf

    loaded = tf.saved_model.load(str(file))

    def run_one(image):
        out = loaded.serve(tf.constant(image[None], "float32"))
        return [np.asarray(out[n])[0] for n in names] if names else [np.asarray(out)[0]]

    return _Runtime("tensorflow.saved_model", run_one)


def _name_onnx_outputs(file, names):
    """Names the ONNX graph's outputs as the Keras model's (the torch
    exporter numbers them), in the order Keras flattens them."""
    import onnx

    graph = onnx.load(str(file))
    renames = {o.name: n for o, n in zip(graph.graph.output, names) if o.name != n}
    if not renames:
        return
    for node in graph.graph.node:
        for field in (node.input, node.output):
            for i, name in enumerate(field):
                field[i] = renames.get(name, name)
    for output in graph.graph.output:
        output.name = renames.get(output.name, output.name)
    onnx.save(graph, str(file))


def _parity(model, run, images, labels, expected, quantize, max_drop, threshold=None):
    """Runs the export on `images`, against the Keras model's `expected`
    outputs (a list: the classes' and, with a `threshold`, the unknown
    score); raises where the export disagrees."""
    got, seconds = [], []
    for image in images:
        start = time.perf_counter()
        got.append(run.run_one(image.astype("float32")))
        seconds.append(time.perf_counter() - start)
    got = [np.asarray(column, "float64") for column in zip(*got)]
    if threshold is not None:
        unknown = {
            "unknown_agreement": round(
                float(np.mean((expected[1] < threshold) == (got[1] < threshold))), 4
            ),
            "max_score_difference": float(f"{np.max(np.abs(expected[1] - got[1])):.3g}"),
        }
    expected, got = expected[0], got[0]
    if _meaning(model) == "logits":
        expected, got = _softmax(expected), _softmax(got)
    agreement = float(np.mean(expected.argmax(-1) == got.argmax(-1)))
    largest = float(np.max(np.abs(expected - got)))
    keras_seconds = []
    for image in images[:_LATENCY_RUNS]:
        start = time.perf_counter()
        model.predict_on_batch(image[None].astype("float32"))  # compiled, as predict is
        keras_seconds.append(time.perf_counter() - start)
    result = {
        "images": int(len(images)),
        "agreement": round(agreement, 4),
        "max_probability_difference": float(f"{largest:.3g}"),
        "keras_accuracy": None,
        "export_accuracy": None,
        "accuracy_drop": None,
        # The first call of each builds what it runs: left out.
        "latency_ms": round(1000 * statistics.median(seconds[1 : _LATENCY_RUNS + 1]), 3)
        if len(seconds) > 1
        else round(1000 * seconds[0], 3),
        "keras_latency_ms": round(1000 * statistics.median(keras_seconds[1:] or keras_seconds), 3),
    }
    if threshold is not None:
        result.update(unknown)
    if labels is not None:
        result["keras_accuracy"] = round(float(np.mean(expected.argmax(-1) == labels)), 4)
        result["export_accuracy"] = round(float(np.mean(got.argmax(-1) == labels)), 4)
        result["accuracy_drop"] = round(result["keras_accuracy"] - result["export_accuracy"], 4)
    if quantize in ("none", "float16"):
        for what, share in (
            ("top class", agreement),
            ("unknown answer", result.get("unknown_agreement", 1.0)),
        ):
            if share < MIN_AGREEMENT:
                raise ValueError(
                    f"The export does not match the Keras model: its {what} differs on "
                    f"{1 - share:.1%} of {len(images)} images (at most "
                    f"{1 - MIN_AGREEMENT:.0%} for a float export). Nothing was written. "
                    f"Details: {json.dumps(result)}"
                )
    elif result["accuracy_drop"] is not None and result["accuracy_drop"] > max_drop:
        raise ValueError(
            f"quantize={quantize!r} costs {result['accuracy_drop']:.4f} of accuracy on "
            f"{len(images)} check images ({result['keras_accuracy']:.4f} -> "
            f"{result['export_accuracy']:.4f}), more than max_drop={max_drop}. Nothing was "
            "written: try quantize='float16' or 'dynamic', or more calibration images."
        )
    return result


def _meaning(model):
    """ "probabilities" when the model ends in a softmax, else "logits"."""
    last = model.layers[-1]
    activation = getattr(last, "activation", None)
    if isinstance(last, keras.layers.Softmax) or getattr(activation, "__name__", "") == "softmax":
        return "probabilities"
    return "logits"


def _softmax(logits):
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


def _size(file):
    file = pathlib.Path(file)
    if file.is_dir():
        return sum(p.stat().st_size for p in file.rglob("*") if p.is_file())
    return file.stat().st_size
