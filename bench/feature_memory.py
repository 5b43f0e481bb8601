"""Peak memory of a feature-store extraction does not grow with the data.

Extracts features for N synthetic images (a generator: no array of all
images is ever held) through MobileNetV2-0.35 at 64 px into a sharded store,
in a fresh process per N, and prints each process's peak RSS.

    KERAS_BACKEND=jax python bench/feature_memory.py [--sizes 5000 20000]
"""

import argparse
import os
import subprocess
import sys
import tempfile

CHILD = r"""
import resource, sys, tempfile, time
import numpy as np, keras, keras_transfer as ktr
n, store = int(sys.argv[1]), sys.argv[2]
model = ktr.transfer("mobilenet_v2", weights=None, input_shape=(64, 64, 3),
                    backbone_kwargs={"alpha": 0.35})
def batches(rng=np.random.default_rng(0)):
    for start in range(0, n, 100):
        yield rng.uniform(0, 255, (min(100, n - start), 64, 64, 3)).astype("float32")
start = time.perf_counter()
feats = ktr.extract_features(model, batches(), cache=store, progress=False)
assert feats.x.shape == (n, 1280), feats.x.shape
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{n} {peak_mb:.0f} {time.perf_counter() - start:.1f}")
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000])
    args = parser.parse_args()
    rows = []
    for n in args.sizes:
        with tempfile.TemporaryDirectory() as store:
            out = subprocess.run(
                [sys.executable, "-c", CHILD, str(n), store + "/s"],
                capture_output=True,
                text=True,
                check=True,
            )
            size, peak, wall = out.stdout.split()[-3:]
            rows.append((int(size), float(peak), float(wall)))
    print(f"backend {os.environ.get('KERAS_BACKEND', 'tensorflow')}")
    for size, peak, wall in rows:
        print(f"{size:>7} images: peak RSS {peak:7.0f} MB, {wall:6.1f} s, {size / wall:6.0f} img/s")
    growth = rows[-1][1] / rows[0][1]
    print(
        f"peak RSS ratio {rows[-1][0] // rows[0][0]}x the images: {growth:.2f}x "
        f"(bar: under 2048 MB and not growing with the image count)"
    )


if __name__ == "__main__":
    main()
