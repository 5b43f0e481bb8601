"""How many epochs for the head on features (`--strategy feature_extraction`)?

The feature-extraction recipe trains a small Keras head (`fit_head`: the
classifier Dense on pooled features, Adam 1e-3, batch 32) on features
extracted once. Its default number of epochs was 20 in the recipe and 10 on
the command line; this measures which to keep, on the photos of ../shared,
with two ImageNet backbones (MobileNetV2 0.35 and 1.0, weights in
../shared/weights):

  hymenoptera   ants and bees, 245 training photos, 224 px;
  cats_vs_dogs  800 training photos, 224 px;
  dtd10         textures, 10 classes, 500 training photos, 224 px;
  eurosat10     satellite land cover, 10 classes, 3,000 photos at 96 px.

Features are extracted once per set and backbone; then, for each seed, a
fresh head trains for each candidate number of epochs. Prints validation
accuracy per seed, the mean, the head's fit time, and each candidate's
mean margin against the best candidate of its row.

    KERAS_BACKEND=tensorflow python bench/head_epochs.py --seeds 0 1 2
"""

import argparse
import functools
import pathlib
import time

import keras
import numpy as np

import keras_transfer as ktr
from keras_transfer.heads.feature_heads import fit_head

SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared"
WEIGHTS = {
    "mnv2_0.35": (0.35, SHARED / "weights" / "mobilenet_v2_0.35_224_teachable_machine_export.h5"),
    "mnv2_1.0": (
        1.0,
        SHARED / "weights" / "mobilenet_v2_1.0_224_notop_dequant_from_tflite_int8.weights.h5",
    ),
}
SETS = {
    "hymenoptera": ("hymenoptera_data", 224),
    "cats_vs_dogs": ("cats_vs_dogs", 224),
    "dtd10": ("dtd10", 224),
    "eurosat10": ("eurosat10", 96),
}


def features(name, backbone):
    folder, size = SETS[name]
    folder = SHARED / "data" / folder
    alpha, weights = WEIGHTS[backbone]
    model = ktr.transfer(
        functools.partial(keras.applications.MobileNetV2, alpha=alpha),
        weights=str(weights),
        input_shape=(size, size, 3),
    )
    names = sorted(p.name for p in (folder / "train").iterdir() if p.is_dir())
    out = []
    for split in ("train", "val"):
        stream = ktr.ImageStream(folder / split, (size, size), 32, class_names=names)
        out.append(ktr.extract_features(model, stream, progress=False))
    return out, len(names)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, nargs="+", default=[5, 10, 20, 40])
    parser.add_argument("--sets", nargs="+", default=list(SETS))
    parser.add_argument("--backbones", nargs="+", default=list(WEIGHTS))
    args = parser.parse_args()
    if not SHARED.is_dir():
        raise SystemExit(f"../shared is absent ({SHARED}): the photos and weights are needed")
    print(f"backend {keras.backend.backend()}; val accuracy per seed {args.seeds}")
    margins = {e: [] for e in args.epochs}
    for backbone in args.backbones:
        for name in args.sets:
            (train, val), num_classes = features(name, backbone)
            means = {}
            for epochs in args.epochs:
                scores, seconds = [], []
                for seed in args.seeds:
                    keras.utils.set_random_seed(seed)
                    start = time.perf_counter()
                    head = fit_head(train, num_classes, epochs=epochs)
                    seconds.append(time.perf_counter() - start)
                    logits = head.predict(val.x, batch_size=256, verbose=0)
                    scores.append(float(np.mean(logits.argmax(-1) == val.labels)))
                means[epochs] = float(np.mean(scores))
                print(
                    f"{backbone:<10} {name:<13} epochs {epochs:>3}: "
                    + " ".join(f"{s:.4f}" for s in scores)
                    + f"  mean {means[epochs]:.4f}  fit {np.mean(seconds):5.1f} s",
                    flush=True,
                )
            best = max(means.values())
            for epochs, mean in means.items():
                margins[epochs].append(mean - best)
    print("\nmean margin against each row's best (points), and the worst row:")
    for epochs, values in margins.items():
        print(
            f"  epochs {epochs:>3}: mean {100 * np.mean(values):+.2f}, "
            f"worst {100 * min(values):+.2f}"
        )


if __name__ == "__main__":
    main()
