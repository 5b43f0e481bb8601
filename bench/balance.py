"""Classes of unequal size: `keras-transfer fit`'s default with and without
its class balancing, on hymenoptera with the ants cut to a fifth.

The training folder keeps the first fifth of hymenoptera's training ants
in sorted file order and all its bees (about 1 to 5); the validation
photos are hymenoptera's own (--val-dir). For each seed, `keras-transfer
fit` with its defaults (the adaptive recipe, which balances classes once
the largest has 3 times the images of the smallest) and with
`--no-balance`, on ImageNet MobileNetV2-0.35 (../shared/weights; `--backbone
mnv2_1.0` for the derived MobileNetV2-1.0) at 224 px.
Prints per seed the balanced accuracy (the mean of the per-class recalls),
the accuracy, each class's recall, what the recipe kept and the wall time;
then #45's check: the default's mean balanced accuracy at least 2 points
above balancing off's.

    KERAS_BACKEND=tensorflow python bench/balance.py --seeds 0 1 2 [--backbone mnv2_1.0]
"""

import argparse
import json
import pathlib
import tempfile
import time

import numpy as np

import keras_transfer as ktr  # noqa: F401  (the package, before its command line)
from keras_transfer.commands import cli

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DATA = SHARED / "data" / "hymenoptera_data"
BACKBONES = {  # --backbone: (alpha, weights)
    "mnv2_0.35": (0.35, SHARED / "weights" / "mobilenet_v2_0.35_224_teachable_machine_export.h5"),
    "mnv2_1.0": (
        1.0,
        SHARED / "weights" / "mobilenet_v2_1.0_224_notop_dequant_from_tflite_int8.weights.h5",
    ),
}
SHARE = 5  # the ants kept: the first 1/SHARE


def cut_folder(root):
    """hymenoptera's training folder with its ants cut to the first fifth."""
    for name in ("ants", "bees"):
        (root / name).mkdir(parents=True)
        files = sorted(p for p in (DATA / "train" / name).iterdir() if p.is_file())
        for path in files[: len(files) // SHARE] if name == "ants" else files:
            (root / name / path.name).symlink_to(path)
    return {name: len(list((root / name).iterdir())) for name in ("ants", "bees")}


def run(train, seed, balance, out, backbone):
    alpha, weights = BACKBONES[backbone]
    argv = ["fit", str(train), "--val-dir", str(DATA / "val"), "--backbone", "mobilenet_v2"]
    argv += ["--backbone-arg", f"alpha={alpha}", "--weights", str(weights), "--seed", str(seed)]
    argv += ["--out", str(out), "--quiet"] + ([] if balance else ["--no-balance"])
    start = time.perf_counter()
    assert cli.main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    metrics["wall_s"] = time.perf_counter() - start
    return metrics


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--backbone", choices=list(BACKBONES), default="mnv2_0.35")
    args = parser.parse_args()
    if not SHARED.is_dir():
        raise SystemExit(f"../shared is absent ({SHARED}): the photos and weights are needed")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        counts = cut_folder(tmp / "train")
        print(f"training images: {counts}, backbone {args.backbone}", flush=True)
        balanced = {True: [], False: []}
        for seed in args.seeds:
            for balance in (True, False):
                m = run(tmp / "train", seed, balance, tmp / f"run-{seed}-{balance}", args.backbone)
                balanced[balance].append(m["balanced_accuracy"])
                recalls = {name: round(c["recall"], 3) for name, c in m["per_class"].items()}
                print(
                    f"seed {seed} balance {'on ' if balance else 'off'}: balanced accuracy "
                    f"{m['balanced_accuracy']:.4f}  accuracy {m['accuracy']:.4f}  recall "
                    f"{recalls}  kept {m['recipe']['kept']}  used "
                    f"{m['recipe']['balance']['used']}  {m['wall_s']:.0f} s",
                    flush=True,
                )
    gain = np.mean(balanced[True]) - np.mean(balanced[False])
    print(
        f"mean balanced accuracy: on {np.mean(balanced[True]):.4f}, off "
        f"{np.mean(balanced[False]):.4f}, gain {100 * gain:+.1f} points against +2: "
        + ("met" if gain >= 0.02 else "MISSED")
    )


if __name__ == "__main__":
    main()
