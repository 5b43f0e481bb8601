"""The adaptive probe's scikit-learn fits on one BLAS thread against the
machine's default thread pools, interleaved in one run.

The default's probe (`linear_probe.fit_probe`: the cross-validation path of
C, then the fit) runs its fits under `threadpoolctl.threadpool_limits(1)`.
This times it as it is and with the limit lifted (the default pools), on
the frozen features of a shared set and their two augmented views, as the
adaptive recipe builds them, alternating the two `--repeats` times. Prints
each trial, and the median (min, max) of the paired ratios: threaded time
over one-thread time (the bar: above 1, the limit pays).

    KERAS_BACKEND=tensorflow python bench/probe_threads.py [--setting dtd10] [--repeats 3]
"""

import argparse
import contextlib
import statistics
import time
from unittest import mock

import keras
import numpy as np
from recipes import SETTINGS, Setting

from keras_transfer.recipes import adaptive, linear_probe
from keras_transfer.recipes.augmentation import photo_augmentation


def timed(table, labels, groups, num_classes, threaded):
    lifted = mock.patch("threadpoolctl.threadpool_limits", lambda *a, **k: contextlib.nullcontext())
    features = table.copy()  # fit_probe standardises in place
    with lifted if threaded else contextlib.nullcontext():
        start = time.perf_counter()
        probe = linear_probe.fit_probe(features, labels, num_classes, seed=0, groups=groups)
    return time.perf_counter() - start, probe["C"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", choices=list(SETTINGS), default="dtd10")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    setting = Setting(args.setting)
    setting.require()
    train, _ = setting.streams(0)
    keras.utils.set_random_seed(0)
    table, _ = adaptive._features(setting.model("fine_tune"), train, 32, photo_augmentation())
    images, copies, width = table.shape
    rows = np.ascontiguousarray(table.reshape(-1, width))
    labels = np.repeat(train.labels, copies)
    groups = np.repeat(np.arange(images), copies)
    num_classes = len(setting.class_names)
    print(f"{args.setting}: {len(rows)} rows ({images} images, {copies - 1} views), {width} wide")
    ratios = []
    for trial in range(args.repeats):
        threaded, c_threaded = timed(rows, labels, groups, num_classes, threaded=True)
        one, c_one = timed(rows, labels, groups, num_classes, threaded=False)
        ratios.append(threaded / one)
        print(
            f"  trial {trial}: default threads {threaded:.2f} s (C={c_threaded}), "
            f"one thread {one:.2f} s (C={c_one}), ratio {ratios[-1]:.2f}",
            flush=True,
        )
    print(
        f"threaded / one thread: median {statistics.median(ratios):.2f} "
        f"(min {min(ratios):.2f}, max {max(ratios):.2f}); bar > 1"
    )


if __name__ == "__main__":
    main()
