"""Decoding throughput of `ktr.ImageStream`, against Keras's own folder
loader; how far its pixels are from PIL's full decode; and what they do to
a probe.

1. Throughput: the shared ants/bees photos (ImageNet JPEGs, median
   500 x 375) and dtd10's textures (256 x 256 at most), decoded and resized
   into uint8 batches of 32, each folder looped over `--loops` times, by:
     keras     keras.utils.image_dataset_from_directory (tf.data, its
               parallel map; float32 batches, as it gives them);
     stream    ktr.ImageStream(cache=None): libjpeg-turbo's scaled decoding
               (simplejpeg), the library's reader;
     pil-draft the same without simplejpeg: PIL's `draft` (the reader of an
               install without it, and of the library before it);
     full      the same with reduced_decoding=False (PIL's full decode);
     tf-dec    the decoding alone of Keras's loader (tf.io.decode_image in
               its tf.data map, no resize);
     pil-dec   PIL's decoding alone at its reduced scale (no resize, one
               thread);
     pil-min   PIL's decoding and resize alone, one thread;
     sj-min    read_image alone, one thread: the ceiling of the stream.
   At 224 and 160 px, on 1 and on 2 cores: each core count in its own
   process pinned with `taskset` (both libraries size their thread pools by
   the cores the process may use), one process a trial, the core counts
   alternating, each after an untimed pass of every reader. Readers, sets
   and sizes alternate within a trial; the median and the best of
   `--trials` are printed, and the ratios (of medians) against Keras and
   against one core.
2. `--pixels`: the mean absolute difference, in levels of 255, of
   `read_image`'s pixels (libjpeg-turbo), of PIL's `draft` and of Keras's
   per-image work (TensorFlow's decode and bilinear resize) from PIL's full
   decode and antialiased resize, over every file of hymenoptera, dtd10
   and eurosat10, at 224 and 160 px.
3. `--probe`: a logistic probe (C=1, ktr.heads.LogisticHead) on ImageNet
   features of the shared photos, decoded by the library's reader and by
   PIL's full decode, and by Keras's loader's per-image work (TensorFlow's
   decode and bilinear resize): the validation photos the reader scales,
   the probe's right answers each way, and the validation photos whose
   prediction differs from the full decode's; MobileNetV2-0.35 and 1.0 on
   every set.

    python bench/decode.py [--trials 3] [--loops 3] [--pixels] [--probe]
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
DATA = SHARED / "hymenoptera_data"
SETS = {"hymenoptera": DATA, "dtd10": SHARED / "dtd10"}
WEIGHTS = ROOT.parent / "shared" / "weights" / "mobilenet_v2_0.35_224_teachable_machine_export.h5"
READERS = ("keras", "stream", "pil-draft", "full", "tf-dec", "pil-dec", "pil-min", "sj-min")
ONE_THREAD = ("pil-dec", "pil-min", "sj-min")
SIZES = (224, 160)


def child(loops):
    """One pinned process: every set, reader and size, after an untimed pass."""
    import keras

    import keras_transfer as ktr
    from keras_transfer.images import decoding as image_decoding

    rates = {}
    # A first untimed pass of every reader, one loop: TensorFlow's and the
    # thread pools' start-up is not the readers' speed.
    for timed in (False, True):
        for name, root in SETS.items():
            for size in SIZES:
                for reader in READERS:
                    start, count = time.perf_counter(), 0
                    for _ in range(loops if timed else 1):
                        for split in ("train", "val"):
                            folder = root / split
                            if reader == "keras":
                                data = keras.utils.image_dataset_from_directory(
                                    folder,
                                    image_size=(size, size),
                                    batch_size=32,
                                    shuffle=False,
                                    verbose=False,
                                )
                                for images, _ in data.as_numpy_iterator():
                                    count += len(images)
                            elif reader == "tf-dec":
                                count += _tf_decode(folder)
                            elif reader in ("pil-dec", "pil-min"):
                                count += _pil_decode(folder, size, reader == "pil-min")
                            elif reader == "sj-min":
                                for path in _paths(folder):
                                    image_decoding.read_image(path, (size, size))
                                    count += 1
                            else:
                                fast = image_decoding.simplejpeg
                                if reader == "pil-draft":
                                    image_decoding.simplejpeg = None
                                try:
                                    stream = ktr.ImageStream(
                                        folder,
                                        (size, size),
                                        32,
                                        cache=None,
                                        reduced_decoding=reader != "full",
                                    )
                                    for images, _, _ in stream.iter_batches():
                                        count += len(images)
                                finally:
                                    image_decoding.simplejpeg = fast
                    if timed:
                        rates[f"{name}:{reader}@{size}"] = count / (time.perf_counter() - start)
    print(json.dumps(rates))


def _tf_decode(folder):
    """Keras's loader's decoding alone (its `tf.data` map, no resize)."""
    import tensorflow as tf

    paths = [str(path) for path in _paths(folder)]
    data = tf.data.Dataset.from_tensor_slices(paths).map(
        lambda path: tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    return sum(1 for _ in data.as_numpy_iterator())


def _pil_decode(folder, size, resize):
    """PIL's decoding alone, at the stream's reduced scale (no EXIF, no
    batches), and with `resize` its resize: what any reader of
    `read_image`'s pixels spends, one photo at a time."""
    from PIL import Image

    paths = _paths(folder)
    for path in paths:
        with Image.open(path) as image:
            image.draft(image.mode, (size, size))
            image.load()
            if resize:
                image.resize((size, size), Image.BILINEAR)
    return len(paths)


def _paths(folder):
    from keras_transfer.images.folder import scan

    return scan(folder)[1]


def throughput(trials, loops):
    # One pinned process a trial and core count, alternating: the machine's
    # speed drifts over minutes, and a ratio needs both figures from the
    # same minutes.
    trial_rates = {1: [], 2: []}
    for _ in range(trials):
        for cores in (1, 2):
            pinned = ["taskset", "-c", ",".join(str(c) for c in range(cores))]
            command = [*pinned, sys.executable, __file__, "--child", "--loops", str(loops)]
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
            out = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
            trial_rates[cores].append(json.loads(out.stdout.strip().splitlines()[-1]))
    median = {
        cores: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        for cores, runs in trial_rates.items()
    }
    best = {
        cores: {key: max(r[key] for r in runs) for key in runs[0]}
        for cores, runs in trial_rates.items()
    }
    print(f"images/s, median (best) of {trials} interleaved trials, {loops} loops (train + val)")
    print(
        f"{'set':<12} {'reader':<9} {'size':>4} {'1 core':>14} {'2 cores':>14} {'2/1':>5} "
        f"{'/keras 1':>9} {'/keras 2':>9}"
    )
    for name in SETS:
        for size in SIZES:
            for reader in READERS:
                key, keras_key = f"{name}:{reader}@{size}", f"{name}:keras@{size}"
                one, two = median[1][key], median[2][key]
                line = f"{name:<12} {reader:<9} {size:>4} {one:>6.0f} ({best[1][key]:>5.0f}) "
                if reader in ONE_THREAD:  # one thread: a one-core figure only
                    line += f"{'-':>14} {'-':>5} {one / median[1][keras_key]:>9.2f}"
                else:
                    line += (
                        f"{two:>6.0f} ({best[2][key]:>5.0f}) {two / one:>5.2f} "
                        f"{one / median[1][keras_key]:>9.2f} {two / median[2][keras_key]:>9.2f}"
                    )
                print(line)
    # Each trial's own ratio: the spread that the machine's drift leaves.
    print("\nthe issue's bars, from the medians (each trial's own ratio in brackets):")
    for name in SETS:
        for size, bar in ((224, 1.0), (160, 1.5)):
            key, keras_key = f"{name}:stream@{size}", f"{name}:keras@{size}"
            ratio = median[1][key] / median[1][keras_key]
            each = ", ".join(f"{r[key] / r[keras_key]:.2f}" for r in trial_rates[1])
            print(
                f"  {name} {size} px, stream / keras on one core: {ratio:.2f} [{each}] "
                f"(bar {bar}) {'ok' if ratio >= bar else 'MISSED'}"
            )
        for size in SIZES:
            key = f"{name}:stream@{size}"
            ratio = median[2][key] / median[1][key]
            print(
                f"  {name} {size} px, stream on two cores / one core: {ratio:.2f} (bar 1.7) "
                f"{'ok' if ratio >= 1.7 else 'MISSED'}"
            )


PIXEL_SETS = ("hymenoptera_data", "dtd10", "eurosat10")


def pixels():
    """Mean absolute difference from PIL's full decode, per set and size."""
    import numpy as np
    import tensorflow as tf

    from keras_transfer.images import decoding as image_decoding

    print("mean |difference| from PIL's full decode and antialiased resize, levels of 255")
    print(f"{'set':<17} {'size':>4} {'files':>6} {'reader':>7} {'draft':>6} {'keras':>6}")
    for name in PIXEL_SETS:
        paths = _paths(SHARED / name / "train") + _paths(SHARED / name / "val")
        for size in SIZES:
            diffs = {"reader": [], "draft": [], "keras": []}
            for path in paths:
                reference = image_decoding.read_image(path, (size, size), False).astype("int16")
                ours = image_decoding.read_image(path, (size, size))
                fast = image_decoding.simplejpeg
                image_decoding.simplejpeg = None
                try:
                    draft = image_decoding.read_image(path, (size, size))
                finally:
                    image_decoding.simplejpeg = fast
                decoded = tf.io.decode_image(
                    tf.io.read_file(str(path)), channels=3, expand_animations=False
                )
                keras_pixels = tf.image.resize(decoded, (size, size)).numpy()
                for key, image in (("reader", ours), ("draft", draft), ("keras", keras_pixels)):
                    diffs[key].append(np.abs(image - reference).mean())
            worst = np.mean(diffs["reader"])
            print(
                f"{name:<17} {size:>4} {len(paths):>6} {worst:>7.2f} "
                f"{np.mean(diffs['draft']):>6.2f} {np.mean(diffs['keras']):>6.2f}   "
                f"(bar 3) {'ok' if worst <= 3 else 'MISSED'}"
            )


# The probe's backbones: (keras_transfer name, kwargs, ImageNet weights in ../shared).
PROBE_BACKBONES = {
    "MobileNetV2-0.35": ("mobilenet_v2", {"alpha": 0.35}, WEIGHTS),
    "MobileNetV2-1.0": (
        "mobilenet_v2",
        None,
        WEIGHTS.parent / "mobilenet_v2_1.0_224_notop_dequant_from_tflite_int8.weights.h5",
    ),
    "MobileNetV3Small": (
        "mobilenet_v3_small",
        None,
        WEIGHTS.parent / "mobilenet_v3_small_1.0_224_notop_dequant_from_tflite_uint8.weights.h5",
    ),
}
# (data set, backbone, size): each set at the sizes, with both
# MobileNetV2s; MobileNetV3Small on the ants and bees.
PROBES = [
    *(
        (data, backbone, size)
        for backbone in ("MobileNetV2-0.35", "MobileNetV2-1.0")
        for data, size in (
            ("hymenoptera_data", 224),
            ("hymenoptera_data", 160),
            ("dtd10", 224),
            ("dtd10", 160),
            ("cats_vs_dogs", 224),
            ("eurosat10", 96),
        )
    ),
    ("hymenoptera_data", "MobileNetV3Small", 224),
    ("hymenoptera_data", "MobileNetV3Small", 160),
]


def probe():
    import keras
    import numpy as np

    import keras_transfer as ktr

    print(
        "validation photos right with PIL's full decode, the library's reader and "
        "Keras's loader's pixels (TensorFlow's decode and bilinear resize)"
    )
    print(
        f"{'data':<17} {'backbone':<17} {'size':>4} {'scaled':>9} {'full':>6} "
        f"{'reader':>7} {'differ':>7} {'keras':>6} {'differ':>7}"
    )
    for data, backbone, size in PROBES:
        name, kwargs, weights = PROBE_BACKBONES[backbone]
        keras.utils.clear_session()
        model = ktr.transfer(
            name, weights=str(weights), backbone_kwargs=kwargs, input_shape=(size, size, 3)
        )

        right, predictions = {}, {}
        for reader in ("full", "reader", "keras"):
            train, _ = _features(model, DATA.parent / data / "train", size, reader)
            head = ktr.heads.LogisticHead().fit(train)
            val, paths = _features(model, DATA.parent / data / "val", size, reader)
            predictions[reader] = head.predict(val)
            right[reader] = int(np.sum(predictions[reader] == val.labels))
        differ = {
            reader: int(np.sum(predictions[reader] != predictions["full"]))
            for reader in ("reader", "keras")
        }
        share = _scaled_share(paths, size)
        gap = abs(right["reader"] - right["full"])
        print(
            f"{data:<17} {backbone:<17} {size:>4} {share:>9} {right['full']:>6} "
            f"{right['reader']:>7} {differ['reader']:>7} {right['keras']:>6} "
            f"{differ['keras']:>7}   of {len(val.labels)}  "
            f"(bar: reader within 1 of full) {'ok' if gap <= 1 else 'MISSED'}",
            flush=True,
        )


def _features(model, folder, size, reader):
    """`(features, paths)`: `model`'s features of `folder` decoded by
    `reader` ("full", "reader", or "keras": Keras's loader's per-image
    work), and its files."""
    import numpy as np

    import keras_transfer as ktr

    stream = ktr.ImageStream(
        folder, (size, size), 32, cache=None, reduced_decoding=reader != "full"
    )
    if reader == "keras":
        import tensorflow as tf

        images = [
            tf.image.resize(
                tf.io.decode_image(tf.io.read_file(str(path)), channels=3, expand_animations=False),
                (size, size),
            ).numpy()
            for path in stream.paths
        ]
        data = (np.stack(images), stream.labels)
    else:
        images, labels = zip(*[stream.batch(i)[:2] for i in range(len(stream))])
        data = (np.concatenate(images), np.concatenate(labels))
    return ktr.extract_features(model, data, progress=False), stream.paths


def _scaled_share(paths, size):
    """How many of `paths` libjpeg-turbo decodes below full size, as "k/n":
    a JPEG whose 7/8 scale is still at least `size` on its shorter side."""
    import simplejpeg

    scaled = 0
    for path in paths:
        data = path.read_bytes()
        if data[:3] == b"\xff\xd8\xff":
            height, width = simplejpeg.decode_jpeg_header(data)[:2]
            scaled += -(-min(height, width) * 7 // 8) >= size
    return f"{scaled}/{len(paths)}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--loops", type=int, default=3)
    parser.add_argument("--pixels", action="store_true")
    parser.add_argument("--probe", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not all(root.is_dir() for root in SETS.values()):
        sys.exit(f"needs {SHARED} (the shared photos)")
    if args.child:
        child(args.loops)
    elif args.pixels:
        pixels()
    elif args.probe:
        probe()
    else:
        throughput(args.trials, args.loops)


if __name__ == "__main__":
    main()
