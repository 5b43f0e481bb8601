"""Multi-source fusion: two ImageNet backbones, one feature vector, offline.

Extracts features of the ants/bees photos from MobileNetV2-0.35 and
MobileNet v1-0.25 (the two weight files in ../shared) in one pass each,
fuses them (`FeatureFusion`, concatenation), and fits a logistic-regression
probe on each source and on the fusion. Whether fusion beats the better
source is printed, not assumed.

    python examples/multi_source_fusion.py [--image-size 224] [--fusion concat]
"""

import argparse
import functools
import pathlib
import sys

import keras

import keras_transfer as ktr

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "hymenoptera_data"
WEIGHTS = ROOT.parent / "shared" / "weights"


def probe_scores(image_size=224, fusion="concat"):
    """Validation accuracy of a logistic probe on each source and the fusion."""
    shape = (image_size, image_size, 3)
    sources = [
        ktr.transfer(
            functools.partial(keras.applications.MobileNetV2, alpha=0.35),
            input_shape=shape,
            weights=str(WEIGHTS / "mobilenet_v2_0.35_224_teachable_machine_export.h5"),
        ),
        ktr.transfer(
            functools.partial(keras.applications.MobileNet, alpha=0.25),
            input_shape=shape,
            weights=str(WEIGHTS / "mobilenet_2_5_224_tf_no_top.h5"),
        ),
    ]
    train, val = (
        ktr.extract_features(sources, DATA / split, batch_size=64, fusion=fusion, progress=False)
        for split in ("train", "val")
    )
    return {
        name: ktr.heads.LogisticHead()
        .fit(train.features[name], train.labels)
        .evaluate(val.features[name], val.labels)
        for name in train.features
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--fusion", default="concat", help="a FeatureFusion mode")
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        print(f"needs {DATA} and the weights in {WEIGHTS}")
        return 1
    scores = probe_scores(args.image_size, args.fusion)
    for name, score in scores.items():
        print(f"{name:<16} validation accuracy {score:.3f}")
    best_single = max(v for k, v in scores.items() if k != "fused")
    print(
        f"fusion {'beats' if scores['fused'] > best_single else 'does not beat'} the better "
        f"source: {scores['fused']:.3f} vs {best_single:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
