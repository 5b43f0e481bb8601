"""Peak memory of the command line as a folder of photos grows.

Makes synthetic JPEG folders (320 x 240 photos in 4 classes, of `--sizes`
photos each) and runs on each, in a fresh process:

    fit       keras-transfer fit --strategy feature_extraction (and, with
              --default, the default strategy), MobileNetV2-0.35 at 160 px
    predict   keras-transfer predict on the whole folder (JSON lines)
    evaluate  keras-transfer evaluate of that run on the whole folder

It prints each run's peak resident memory (the child's `ru_maxrss` from
`os.wait4`: the largest resident set it reached, which counts the touched
pages of memory-mapped files), its wall time and images/s, and the growth
in MB from the smallest folder to each larger one, next to the decoded
pixels (N x 160 x 160 x 3 bytes) that a reader holding every image needs.

    python bench/scale.py [--sizes 2000 32000] [--default] [--fit-only] [--root /tmp/ktr-scale]

The folders are written once under `--root` (a folder is used again only
when its `.complete` marker, written last, says it holds that many photos).
"""

import argparse
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
WEIGHTS = ROOT.parent / "shared" / "weights" / "mobilenet_v2_0.35_224_teachable_machine_export.h5"
CLASSES = ("amber", "moss", "slate", "rust")
SIZE = 160


def make_folder(root, count):
    """`count` JPEGs of 320 x 240 in the class folders of `root/n<count>`."""
    from PIL import Image

    folder = root / f"n{count}"
    marker = folder / ".complete"
    if marker.is_file() and marker.read_text() == str(count):
        return folder
    if folder.exists():
        sys.exit(f"{folder} exists but is not a complete folder of {count} photos: remove it")
    staging = root / f".n{count}-partial-{os.getpid()}"
    rng = np.random.default_rng(count)
    tints = rng.uniform(60, 200, (len(CLASSES), 3))
    for index in range(count):
        label = index % len(CLASSES)
        # A coarse random scene, upsampled, with grain: JPEGs of photo-like size.
        coarse = rng.normal(tints[label], 40, (6, 8, 3)).clip(0, 255).astype("uint8")
        image = np.asarray(Image.fromarray(coarse).resize((320, 240), Image.BICUBIC), "float32")
        image = (image + rng.normal(0, 8, image.shape)).clip(0, 255).astype("uint8")
        path = staging / CLASSES[label] / f"{index:06d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path, quality=90)
    (staging / ".complete").write_text(str(count))
    staging.rename(folder)
    return folder


def run(argv):
    """`(peak resident MB, seconds)` of one command in a fresh process."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.setdefault("KERAS_BACKEND", "tensorflow")
    with tempfile.TemporaryFile("w+") as errors:  # a pipe could fill and block the child
        start = time.perf_counter()
        child = subprocess.Popen(
            [sys.executable, "-m", "keras_transfer", *argv],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=errors,
        )
        # wait4 gives this child's own rusage (RUSAGE_CHILDREN would be the
        # largest of every child so far).
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            errors.seek(0)
            sys.exit(f"keras-transfer {' '.join(argv)} failed:\n{errors.read()[-3000:]}")
    return usage.ru_maxrss / 1024, seconds  # kB on Linux


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 32000])
    parser.add_argument("--default", action="store_true", help="also fit the default strategy")
    parser.add_argument("--fit-only", action="store_true", help="skip predict and evaluate")
    parser.add_argument("--root", type=pathlib.Path, default=pathlib.Path("/tmp/ktr-scale"))
    args = parser.parse_args()
    if not WEIGHTS.is_file():
        sys.exit(f"needs {WEIGHTS} (the shared weights)")
    args.root.mkdir(parents=True, exist_ok=True)
    backbone = [
        "--backbone",
        "mobilenet_v2",
        "--backbone-arg",
        "alpha=0.35",
        "--weights",
        str(WEIGHTS),
        "--image-size",
        str(SIZE),
    ]
    strategies = ["feature_extraction"] + (["auto"] if args.default else [])
    results = {}
    for count in sorted(args.sizes):
        folder = make_folder(args.root, count)
        for strategy in strategies:
            out = args.root / f"run-{count}-{strategy}"
            argv = ["fit", str(folder), *backbone, "--strategy", strategy, "--out", str(out)]
            results[count, f"fit {strategy}"] = run([*argv, "--overwrite", "--quiet"])
        run_dir = args.root / f"run-{count}-feature_extraction"
        if not args.fit_only:
            results[count, "predict"] = run(["predict", str(run_dir), str(folder), "--json"])
            evaluation = args.root / f"evaluation-{count}"
            results[count, "evaluate"] = run(
                ["evaluate", str(run_dir), str(folder), "--out", str(evaluation), "--overwrite"]
            )
        for key in [k for k in results if k[0] == count]:
            peak, seconds = results[key]
            print(
                f"{count:>7,} photos  {key[1]:<24} peak {peak:>7.0f} MB  {seconds:>6.1f} s  "
                f"{count / seconds:>6.1f} photos/s overall",
                flush=True,
            )
    smallest = min(args.sizes)
    print(f"\ngrowth of the peak from {smallest:,} photos (decoded pixels for comparison):")
    for count in sorted(args.sizes):
        if count == smallest:
            continue
        pixels = (count - smallest) * SIZE * SIZE * 3 / 2**20
        for (n, what), (peak, _) in results.items():
            if n == count:
                grown = peak - results[smallest, what][0]
                print(
                    f"{count:>7,} photos  {what:<24} +{grown:>6.0f} MB  (pixels: +{pixels:.0f} MB)"
                )


if __name__ == "__main__":
    main()
