"""Feature extraction + SVM: the method's second strategy, offline.

Freeze an ImageNet backbone, pull average-pooled last-conv features in
batches of 100, store them on disk as .npz, train a linear SVM on them and
report accuracy. Uses the ants/bees photos and MobileNet v1-0.25 weights in
../shared.

    python examples/feature_extraction_svm.py [--image-size 224] [--out features]
"""

import argparse
import pathlib
import sys
import tempfile

import keras

import keras_transfer as ktr

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "hymenoptera_data"
WEIGHTS = ROOT.parent / "shared" / "weights" / "mobilenet_2_5_224_tf_no_top.h5"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--out", default=None, help="folder for the .npz stores")
    args = parser.parse_args(argv)
    if not DATA.is_dir() or not WEIGHTS.is_file():
        print(f"needs {DATA} and {WEIGHTS} (the shared photos and weights)")
        return 1
    out = pathlib.Path(args.out or tempfile.mkdtemp(prefix="kt-features-"))
    size = (args.image_size, args.image_size, 3)
    model = ktr.transfer(
        keras.applications.MobileNet,
        weights=str(WEIGHTS),
        input_shape=size,
        backbone_kwargs={"alpha": 0.25},
        pooling="avg",
    )  # frozen
    train = ktr.extract_features(model, DATA / "train", batch_size=100, cache=out / "train.npz")
    val = ktr.extract_features(model, DATA / "val", batch_size=100, cache=out / "val.npz")
    svm = ktr.heads.SVMHead(C=0.1, normalize="inf").fit(train)
    print(
        f"features {train.x.shape} saved to {out}; SVM validation accuracy {svm.evaluate(val):.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
