"""Decoding throughput of `ktr.ImageStream`, against Keras's own folder
loader, and what reduced-scale JPEG decoding does to a probe.

1. Throughput: the shared ants/bees photos (ImageNet JPEGs, median
   500 x 375), decoded and resized into uint8 batches of 32, the folder
   looped over `--loops` times, by:
     keras   keras.utils.image_dataset_from_directory (tf.data, its parallel
             map; float32 batches, as it gives them);
     stream  ktr.ImageStream(cache=None), reduced-scale decoding on;
     full    the same with reduced_decoding=False.
   At 224 and 160 px, on 1 and on 2 cores: each core count in its own
   process pinned with `taskset` (both libraries size their thread pools by
   the cores the process may use). Readers and sizes alternate within a
   trial; the best of `--trials` is kept. Prints images/s and the ratios
   against Keras and against one core.
2. `--probe`: a logistic probe (C=1, ktr.heads.LogisticHead) on ImageNet
   MobileNetV2-0.35 features of the ants/bees photos at 224 px, decoded
   with and without reduced-scale decoding: its validation accuracy, and
   the validation images whose prediction differs.

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
READERS = ("keras", "stream", "full")
SIZES = (224, 160)


def child(trials, loops):
    """One pinned process: every reader and size, `trials` times interleaved."""
    import keras

    import keras_transfer as ktr

    best = {}
    for _ in range(trials):
        for size in SIZES:
            for reader in READERS:
                start, count = time.perf_counter(), 0
                for _ in range(loops):
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
                rate = count / (time.perf_counter() - start)
                key = f"{reader}@{size}"
                best[key] = max(best.get(key, 0.0), rate)
    print(json.dumps(best))


def throughput(trials, loops):
    results = {}
    for cores in (1, 2):
        pinned = ["taskset", "-c", ",".join(str(c) for c in range(cores))]
        out = subprocess.run(
            [
                *pinned,
                sys.executable,
                __file__,
                "--child",
                "--trials",
                str(trials),
                "--loops",
                str(loops),
            ],
            capture_output=True,
            text=True,
            check=True,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        ).stdout
        results[cores] = json.loads(out.strip().splitlines()[-1])
    print(f"images/s, best of {trials}, {loops} loops over {DATA.name} (train + val)")
    print(
        f"{'reader':<8} {'size':>4} {'1 core':>8} {'2 cores':>8} {'2/1':>6} "
        f"{'/keras 1':>9} {'/keras 2':>9}"
    )
    for size in SIZES:
        for reader in READERS:
            key = f"{reader}@{size}"
            one, two = results[1][key], results[2][key]
            print(
                f"{reader:<8} {size:>4} {one:>8.0f} {two:>8.0f} {two / one:>6.2f} "
                f"{one / results[1][f'keras@{size}']:>9.2f} "
                f"{two / results[2][f'keras@{size}']:>9.2f}"
            )
    print(
        f"one core decodes {results[1]['stream@224']:.0f} images/s at 224 px "
        f"({results[1]['stream@160']:.0f} at 160 px)"
    )


def probe():
    import functools

    import keras
    import numpy as np

    import keras_transfer as ktr

    model = ktr.transfer(
        functools.partial(keras.applications.MobileNetV2, alpha=0.35),
        weights=str(WEIGHTS),
        input_shape=(224, 224, 3),
    )

    def features(split, reduced):
        stream = ktr.ImageStream(DATA / split, (224, 224), 32, cache=None, reduced_decoding=reduced)
        images, labels = zip(*[stream.batch(i)[:2] for i in range(len(stream))])
        return ktr.extract_features(
            model, (np.concatenate(images), np.concatenate(labels)), progress=False
        )

    predictions = {}
    for reduced in (False, True):
        head = ktr.heads.LogisticHead().fit(features("train", reduced))
        val = features("val", reduced)
        predictions[reduced] = head.predict(val)
        accuracy = float(np.mean(predictions[reduced] == val.labels))
        print(
            f"probe, reduced_decoding={reduced}: validation accuracy {accuracy:.4f} "
            f"({int(round(accuracy * len(val.labels)))} of {len(val.labels)})"
        )
    differ = int(np.sum(predictions[True] != predictions[False]))
    print(f"validation images whose prediction differs: {differ}")


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
