"""Decoding throughput of `ktr.ImageStream`, against Keras's own folder
loader, and what reduced-scale JPEG decoding does to a probe.

1. Throughput: the shared ants/bees photos (ImageNet JPEGs, median
   500 x 375), decoded and resized into uint8 batches of 32, the folder
   looped over `--loops` times, by:
     keras   keras.utils.image_dataset_from_directory (tf.data, its parallel
             map; float32 batches, as it gives them);
     stream  ktr.ImageStream(cache=None), reduced-scale decoding on;
     full    the same with reduced_decoding=False;
     tf-dec  the decoding alone of Keras's loader (tf.io.decode_image in
             its tf.data map, no resize);
     pil-dec the decoding alone of the stream (PIL, at its reduced scale;
             no resize, one thread);
     pil-min PIL's decoding and resize alone, one thread: a ceiling for
             any reader of `read_image`'s pixels.
   At 224 and 160 px, on 1 and on 2 cores: each core count in its own
   process pinned with `taskset` (both libraries size their thread pools by
   the cores the process may use), one process a trial, the core counts
   alternating, each after an untimed pass of every reader. Readers and
   sizes alternate within a trial; the best of
   `--trials` is kept. Prints images/s and the ratios against Keras and
   against one core.
2. `--probe`: a logistic probe (C=1, ktr.heads.LogisticHead) on ImageNet
   features of the shared photos, decoded with and without reduced-scale
   decoding: the validation photos it applies to, the probe's right answers
   each way, and the validation photos whose prediction differs. The
   issue's case (ants/bees, MobileNetV2-0.35, 224 px) first, then 160 px,
   two other backbones and the other two data sets.

    python bench/decode.py [--trials 3] [--loops 5] [--probe]
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "hymenoptera_data"
WEIGHTS = ROOT.parent / "shared" / "weights" / "mobilenet_v2_0.35_224_teachable_machine_export.h5"
READERS = ("keras", "stream", "full", "tf-dec", "pil-dec", "pil-min")
SIZES = (224, 160)


def child(trials, loops):
    """One pinned process: every reader and size, `trials` times interleaved."""
    import keras

    import keras_transfer as ktr

    best = {}
    # A first untimed pass of every reader, one loop: TensorFlow's and the
    # thread pools' start-up is not the readers' speed.
    for trial in range(1 + trials):
        for size in SIZES:
            for reader in READERS:
                start, count = time.perf_counter(), 0
                for _ in range(loops if trial else 1):
                    for split in ("train", "val"):
                        if reader == "keras":
                            data = keras.utils.image_dataset_from_directory(
                                DATA / split,
                                image_size=(size, size),
                                batch_size=32,
                                shuffle=False,
                                verbose=False,
                            )
                            for images, _ in data.as_numpy_iterator():
                                count += len(images)
                        elif reader == "tf-dec":
                            count += _tf_decode(DATA / split)
                        elif reader in ("pil-dec", "pil-min"):
                            count += _pil_decode(DATA / split, size, reader == "pil-min")
                        else:
                            stream = ktr.ImageStream(
                                DATA / split,
                                (size, size),
                                32,
                                cache=None,
                                reduced_decoding=reader == "stream",
                            )
                            for images, _, _ in stream.iter_batches():
                                count += len(images)
                if trial:
                    rate = count / (time.perf_counter() - start)
                    key = f"{reader}@{size}"
                    best[key] = max(best.get(key, 0.0), rate)
    print(json.dumps(best))


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
    from keras_transfer.image_folder import scan

    return scan(folder)[1]


def throughput(trials, loops):
    # One pinned process a trial and core count, alternating: the machine's
    # speed drifts over minutes, and a ratio needs both figures from the
    # same minutes.
    results, trial_rates = {1: {}, 2: {}}, {1: [], 2: []}
    for _ in range(trials):
        for cores in (1, 2):
            pinned = ["taskset", "-c", ",".join(str(c) for c in range(cores))]
            out = subprocess.run(
                [
                    *pinned,
                    sys.executable,
                    __file__,
                    "--child",
                    "--trials",
                    "1",
                    "--loops",
                    str(loops),
                ],
                capture_output=True,
                text=True,
                check=True,
                env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
            ).stdout
            rates = json.loads(out.strip().splitlines()[-1])
            trial_rates[cores].append(rates)
            for key, rate in rates.items():
                results[cores][key] = max(results[cores].get(key, 0.0), rate)
    print(f"images/s, best of {trials}, {loops} loops over {DATA.name} (train + val)")
    print(
        f"{'reader':<8} {'size':>4} {'1 core':>8} {'2 cores':>8} {'2/1':>6} "
        f"{'/keras 1':>9} {'/keras 2':>9}"
    )
    for size in SIZES:
        for reader in READERS:
            key = f"{reader}@{size}"
            one, two = results[1][key], results[2][key]
            line = f"{reader:<8} {size:>4} {one:>8.0f} "
            if reader.startswith("pil-"):  # one thread: a one-core figure only
                line += f"{'-':>8} {'-':>6} {one / results[1][f'keras@{size}']:>9.2f}"
            else:
                line += (
                    f"{two:>8.0f} {two / one:>6.2f} "
                    f"{one / results[1][f'keras@{size}']:>9.2f} "
                    f"{two / results[2][f'keras@{size}']:>9.2f}"
                )
            print(line)
    # Each trial's own ratios: the spread that the machine's drift leaves.
    for cores, readers in ((1, ("stream", "pil-min")), (2, ("stream",))):
        for size in SIZES:
            for reader in readers:
                ratios = [
                    rates[f"{reader}@{size}"] / rates[f"keras@{size}"]
                    for rates in trial_rates[cores]
                ]
                print(
                    f"{reader} / keras, {cores} core(s), {size} px, per trial: "
                    f"min {min(ratios):.2f}, max {max(ratios):.2f}"
                )
    print(
        f"one core decodes {results[1]['stream@224']:.0f} images/s at 224 px "
        f"({results[1]['stream@160']:.0f} at 160 px)"
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
# (data set, backbone, size): the case first, then 160 px, two other
# backbones, and the other shared photos.
PROBES = [
    ("hymenoptera_data", "MobileNetV2-0.35", 224),
    ("hymenoptera_data", "MobileNetV2-0.35", 160),
    ("hymenoptera_data", "MobileNetV2-1.0", 224),
    ("hymenoptera_data", "MobileNetV2-1.0", 160),
    ("hymenoptera_data", "MobileNetV3Small", 224),
    ("hymenoptera_data", "MobileNetV3Small", 160),
    # Their photos' shorter side is 192 and 256 px (median): twice the
    # input side only at these sizes.
    ("cats_vs_dogs", "MobileNetV2-0.35", 96),
    ("dtd10", "MobileNetV2-0.35", 128),
]


def probe():
    import keras
    import numpy as np

    import keras_transfer as ktr

    print(
        f"{'data':<17} {'backbone':<17} {'size':>4} {'reduced':>8} {'full':>6} "
        f"{'reduced':>8} {'differ':>7}"
    )
    for data, backbone, size in PROBES:
        name, kwargs, weights = PROBE_BACKBONES[backbone]
        keras.utils.clear_session()
        model = ktr.transfer(
            name, weights=str(weights), backbone_kwargs=kwargs, input_shape=(size, size, 3)
        )

        right, predictions = {}, {}
        for reduced in (False, True):
            train, _ = _features(model, DATA.parent / data / "train", size, reduced)
            head = ktr.heads.LogisticHead().fit(train)
            val, paths = _features(model, DATA.parent / data / "val", size, reduced)
            predictions[reduced] = head.predict(val)
            right[reduced] = int(np.sum(predictions[reduced] == val.labels))
        differ = int(np.sum(predictions[True] != predictions[False]))
        share = _reduced_share(paths, size)
        print(
            f"{data:<17} {backbone:<17} {size:>4} {share:>8} "
            f"{right[False]:>6} {right[True]:>8} {differ:>7}   of {len(val.labels)}"
        )


def _features(model, folder, size, reduced):
    """`(features, paths)`: `model`'s features of `folder` through
    `ImageStream`, and its files."""
    import numpy as np

    import keras_transfer as ktr

    stream = ktr.ImageStream(folder, (size, size), 32, cache=None, reduced_decoding=reduced)
    images, labels = zip(*[stream.batch(i)[:2] for i in range(len(stream))])
    features = ktr.extract_features(
        model, (np.concatenate(images), np.concatenate(labels)), progress=False
    )
    return features, stream.paths


def _reduced_share(paths, size):
    """How many of `paths` reduced-scale decoding applies to, as "k/n"."""
    from PIL import Image

    reduced = 0
    for path in paths:
        with Image.open(path) as image:
            reduced += image.format == "JPEG" and min(image.size) >= 2 * size
    return f"{reduced}/{len(paths)}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--loops", type=int, default=5)
    parser.add_argument("--probe", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"needs {DATA} (the shared photos)")
    if args.child:
        child(args.trials, args.loops)
    elif args.probe:
        probe()
    else:
        throughput(args.trials, args.loops)


if __name__ == "__main__":
    main()
