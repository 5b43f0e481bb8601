"""A warm feature-store lookup on a photo folder: how long `extract_features`
takes to answer from a store it already holds (the folder's key is made
anew from each file's stat on every call).

    python bench/folder_key.py [FOLDER]   # default ../shared/data/cats_vs_dogs/train

Prints the median of 7 warm lookups, and the median time of the key alone
(`DataSource.fingerprint`), both in milliseconds. Run it on two checkouts
to compare keys (PYTHONPATH=<checkout>).
"""

import pathlib
import statistics
import sys
import tempfile
import time

import keras

import keras_transfer as kt
from keras_transfer.features.sources import DataSource

ROOT = pathlib.Path(__file__).resolve().parents[1]
FOLDER = ROOT.parent / "shared" / "data" / "cats_vs_dogs" / "train"


def main(folder=FOLDER):
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        sys.exit(f"skipped: {folder} is absent (../shared holds the photos)")
    inputs = keras.Input((224, 224, 3))
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(inputs))
    with tempfile.TemporaryDirectory() as cache:
        kt.extract_features(model, folder, cache=cache, progress=False)  # cold
        lookups, keys = [], []
        for _ in range(7):
            start = time.perf_counter()
            kt.extract_features(model, folder, cache=cache, progress=False)
            lookups.append(time.perf_counter() - start)
            start = time.perf_counter()
            DataSource(folder, 100, (224, 224, 3)).fingerprint()
            keys.append(time.perf_counter() - start)
    count = len(DataSource(folder, 100, (224, 224, 3)).paths)
    print(
        f"{count} files: warm lookup {1000 * statistics.median(lookups):.1f} ms, "
        f"key alone {1000 * statistics.median(keys):.1f} ms (medians of 7)"
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
