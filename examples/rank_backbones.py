"""Which backbone? `ktr.rank` on real photos, offline.

Ranks MobileNet v1-0.25 with its ImageNet weights (../shared) against the
same network with random weights, on the ants/bees photos, by
transferability scores of their frozen features: the pretrained one should
come first. A second call reads the features back from the store.

    python examples/rank_backbones.py [--image-size 224] [--cache DIR]
"""

import argparse
import pathlib
import sys
import tempfile
import time

import keras_transfer as ktr

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "hymenoptera_data"
WEIGHTS = ROOT.parent / "shared" / "weights" / "mobilenet_2_5_224_tf_no_top.h5"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--cache", default=None, help="the feature stores' folder")
    args = parser.parse_args(argv)
    if not DATA.is_dir() or not WEIGHTS.is_file():
        print(f"needs {DATA} and {WEIGHTS} (the shared photos and weights)")
        return 1
    size = (args.image_size, args.image_size, 3)
    mobilenet = {"backbone": "mobilenet", "backbone_kwargs": {"alpha": 0.25}, "input_shape": size}
    candidates = [
        {**mobilenet, "weights": None, "name": "random weights"},
        {**mobilenet, "weights": str(WEIGHTS), "name": "imagenet weights"},
    ]
    cache = args.cache or tempfile.mkdtemp(prefix="kt-rank-")
    for attempt in ("cold", "warm"):
        start = time.perf_counter()
        ranking = ktr.rank(candidates, DATA / "train", cache=cache)
        print(f"{attempt} store: {time.perf_counter() - start:.1f} s")
    print(ranking)
    print(f"best: {ranking.best}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
