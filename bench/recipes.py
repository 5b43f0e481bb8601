"""The recipe benchmark: ktr.fine_tune's default against the simple baselines.

--setting demo: the four strategies of `make demo` (a CNN pre-trained on
clean digit scans, transferred to noisy scans from 10 labels per digit),
one demo run per seed, with the default's margins over training from
scratch and the SVM.

On real photos, each setting a folder of ../shared with train/ and val/, a
backbone and its own image size (the class count is the folder's), read
through `ktr.ImageStream` (the path `keras-transfer fit` takes: decoded as
needed, kept in memory when they fit), batch 32, with the real ImageNet
MobileNetV2-0.35 (imported from the Keras 2 export in ../shared/weights) or
the derived MobileNetV2-1.0:

  hymenoptera      ants and bees, 245 training photos, 224 px, MobileNetV2-0.35;
  hymenoptera_1.0  the same with MobileNetV2-1.0;
  cats_vs_dogs     800 training photos, near ImageNet, 224 px;
  dtd10            textures, 10 classes, 500 training photos, 224 px;
  eurosat10        satellite land cover, 10 classes, 3,000 64 px photos at 96 px,
                   where fine-tuning beats the probe;
  eurosat10_1.0    the same with MobileNetV2-1.0.

The recipes, each from a fresh stream and a fresh model, same seeds, every
model built as the README's quickstart builds it (no `augmentation=`):

  (n) ktr.fine_tune(model, train): the adaptive default, nothing else given
      (validation_data is passed for the curves only);
  (c) ktr.fine_tune's fixed recipe, pinned: 1 head epoch, 5 unfrozen
      epochs, base_lr 2e-3 (adaptive=False);
  (d) ktr.transfer(strategy="feature_extraction") with GradualUnfreezing:
      the head for 5 epochs, then the top block, then the next, at 0.1x
      and 0.01x the rate (the best of the settings tried);
  (e) a logistic-regression probe on extracted features (LogisticHead).

Prints, per setting, each recipe's validation accuracy per seed and its
mean, its wall time, the default's decision per seed (kept, epochs run,
why fine-tuning stopped), and the default's per-seed margins and wall-time
ratios against every other recipe, with the acceptance checks of issue
#43. The whole benchmark is long on 2 cores: run one setting (and seed) per
invocation with --json, then --merge the files.

    KERAS_BACKEND=tensorflow python bench/recipes.py --setting eurosat10 --seeds 0 1 2 \\
        --json eurosat10.json
    python bench/recipes.py --merge eurosat10.json hymenoptera.json   # the tables
    KERAS_BACKEND=tensorflow python bench/recipes.py --setting demo --json demo.json
"""

import argparse
import functools
import json
import pathlib
import time

import keras
import numpy as np

import keras_transfer as ktr
from keras_transfer.commands import demo_table as demo

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
# The backbones: MobileNetV2's width, and its ImageNet weights in ../shared.
BACKBONES = {
    "mnv2_0.35": (0.35, SHARED / "weights" / "mobilenet_v2_0.35_224_teachable_machine_export.h5"),
    "mnv2_1.0": (
        1.0,
        SHARED / "weights" / "mobilenet_v2_1.0_224_notop_dequant_from_tflite_int8.weights.h5",
    ),
}
DATA = SHARED / "data"
SETTINGS = {  # --setting: (photo folder with train/ and val/, backbone, image size)
    "hymenoptera": (DATA / "hymenoptera_data", "mnv2_0.35", 224),
    "hymenoptera_1.0": (DATA / "hymenoptera_data", "mnv2_1.0", 224),
    "cats_vs_dogs": (DATA / "cats_vs_dogs", "mnv2_0.35", 224),
    "dtd10": (DATA / "dtd10", "mnv2_0.35", 224),
    "eurosat10": (DATA / "eurosat10", "mnv2_0.35", 96),
    "eurosat10_1.0": (DATA / "eurosat10", "mnv2_1.0", 96),
}
BATCH = 32
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


class Setting:
    """One setting's folder, backbone and size, and fresh streams of it."""

    def __init__(self, name):
        self.name = name
        self.folder, self.backbone, size = SETTINGS[name]
        self.size = (size, size)
        self.alpha, self.weights = BACKBONES[self.backbone]
        self.class_names = sorted(p.name for p in (self.folder / "train").iterdir() if p.is_dir())
        self.val_images = len(ktr.image_folder.scan(self.folder / "val", self.class_names)[1])

    def require(self):
        """Exits with the reason when ../shared lacks this setting's folder or weights."""
        if not self.folder.is_dir() or not self.weights.is_file():
            raise SystemExit(f"skipped: needs {self.folder} and {self.weights} (../shared)")

    def streams(self, seed):
        options = dict(class_names=self.class_names, batch_size=BATCH)
        train = ktr.ImageStream(
            self.folder / "train", self.size, shuffle=True, seed=seed, **options
        )
        return train, ktr.ImageStream(self.folder / "val", self.size, **options)

    def model(self, strategy):
        return ktr.transfer(
            functools.partial(keras.applications.MobileNetV2, alpha=self.alpha),
            len(self.class_names) if strategy else None,
            weights=str(self.weights),
            input_shape=(*self.size, 3),
            strategy=strategy or "feature_extraction",
        )


def recipe_n(setting, seed):
    """The default as a user meets it: `transfer(..., strategy="fine_tune")`
    with no `augmentation=`, then `ktr.fine_tune(model, train)`."""
    train, val = setting.streams(seed)
    model = setting.model("fine_tune")
    history = ktr.fine_tune(model, train, validation_data=val, verbose=0)
    return model.evaluate(val, verbose=0)[1], history.history["val_accuracy"], history.decision


def recipe_c(setting, seed):
    """The fixed recipe, pinned at 1 head epoch, 5 unfrozen ones, 2e-3."""
    train, val = setting.streams(seed)
    model = setting.model("fine_tune")
    history = ktr.fine_tune(
        model, train, validation_data=val, epochs=5, freeze_epochs=1, base_lr=2e-3, verbose=0
    )
    return model.evaluate(val, verbose=0)[1], history.history["val_accuracy"], None


def recipe_d(setting, seed, epochs=8, start_epoch=5):
    """Head for 5 epochs, then the top block, then the next, at 0.1x and
    0.01x the rate."""
    train, val = setting.streams(seed)
    model = setting.model("feature_extraction")
    model.compile(keras.optimizers.Adam(1e-3), LOSS, metrics=["accuracy"])
    unfreezing = ktr.callbacks.GradualUnfreezing(
        start_epoch=start_epoch, max_blocks=2, lr_factor=0.1, verbose=0
    )
    history = model.fit(
        train, epochs=epochs, validation_data=val, verbose=0, callbacks=[unfreezing]
    )
    return model.evaluate(val, verbose=0)[1], history.history["val_accuracy"], None


def recipe_e(setting, seed):
    """A logistic probe on the frozen backbone's features."""
    train, val = setting.streams(seed)
    features = setting.model(None)
    head = ktr.heads.LogisticHead().fit(ktr.extract_features(features, train, progress=False))
    return head.evaluate(ktr.extract_features(features, val, progress=False)), [], None


RECIPES = {"n": recipe_n, "c": recipe_c, "d": recipe_d, "e": recipe_e}
NAMES = {
    "n": "ktr.fine_tune() (adaptive default)",
    "c": "fixed recipe (1 + 5 epochs, 2e-3)",
    "d": "GradualUnfreezing",
    "e": "logistic probe",
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", nargs="+", choices=list(RECIPES), default=list(RECIPES))
    parser.add_argument("--setting", choices=[*SETTINGS, "demo"], default="hymenoptera")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument(
        "--merge", nargs="+", metavar="JSON", help="print the tables of earlier --json runs"
    )
    args = parser.parse_args()
    if args.merge:
        settings = {}
        for path in args.merge:
            for key, runs in json.loads(pathlib.Path(path).read_text())["runs"].items():
                for run in runs:
                    setting = settings.setdefault(run["setting"], {})
                    setting.setdefault(key, []).append(run)
        walls = []
        for name, results in settings.items():
            print(f"\n=== {name}")
            walls.append((report_demo if name == "demo" else report)(results))
        walls = [w for w in walls if w is not None]
        if walls:
            print(
                f"\nthe default's wall time / the fixed recipe's, mean over {len(walls)} "
                f"settings: {np.mean(walls):.2f} (bar <= 1.5; each <= 2)"
            )
        return
    if args.setting == "demo":
        results = run_demo(args.seeds, args.json)
        report_demo(results)
        return
    setting = Setting(args.setting)
    setting.require()
    results = {}
    for seed in args.seeds:  # seed-major: one seed's recipes share the machine's state
        for key in [k for k in RECIPES if k in args.only]:
            keras.utils.clear_session()
            keras.utils.set_random_seed(seed)
            start = time.perf_counter()
            final, curve, decision = RECIPES[key](setting, seed)
            run = {
                "setting": args.setting,
                "seed": seed,
                "final": float(final),
                "wall": time.perf_counter() - start,
                "val_curve": [round(float(a), 4) for a in curve],
                "val_images": setting.val_images,
            }
            if decision:
                run["decision"] = decision
            results.setdefault(key, []).append(run)
            print(f"  ({key}) seed {seed}: {_brief(run)}", flush=True)
            if args.json:  # after every run, so a long benchmark can stop and merge
                pathlib.Path(args.json).write_text(json.dumps({"runs": results}, indent=1))
    report(results)


def _brief(run):
    brief = {k: v for k, v in run.items() if k != "decision"}
    if "decision" in run:
        d = run["decision"]
        brief["kept"] = d["kept"]
        brief["holdout"] = d["fine_tune_holdout_curve"]
        brief["probe_holdout"] = d["probe_holdout_accuracy"]
        brief["stopped"] = d.get("fine_tune_stopped")
    return brief


def run_demo(seeds, json_path=None):
    """`demo.run` once per seed: each row's held-out accuracy and seconds."""
    import tempfile

    results = {}
    for seed in seeds:
        keras.utils.clear_session()
        with tempfile.TemporaryDirectory() as out:
            rows = demo.run(out=pathlib.Path(out) / "demo", seed=seed, quiet=True)
        for row, result in rows.items():
            run = {"setting": "demo", "seed": seed, "final": result["accuracy"]}
            if "kept" in result:
                run["kept"] = result["kept"]
            results.setdefault(row, []).append({**run, "wall": result["seconds"]})
        if json_path:
            pathlib.Path(json_path).write_text(json.dumps({"runs": results}, indent=1))
    return results


def report_demo(results):
    """The demo's rows, mean (min-max) over seeds, and the default's per-seed
    margins over the other rows."""
    print(f"\nbackend {keras.backend.backend()}, the demo's task")
    by_seed = {row: {r["seed"]: r for r in runs} for row, runs in results.items()}
    for row, runs in by_seed.items():
        finals = [r["final"] for r in runs.values()]
        wall = np.mean([r["wall"] for r in runs.values()])
        print(
            f"{row:28s} seeds {sorted(runs)} {np.mean(finals):.3f} "
            f"({min(finals):.3f}-{max(finals):.3f}) {wall:6.1f} s"
        )
    default = by_seed["ktr.fine_tune default"]
    kept = [default[s].get("kept") for s in sorted(default)]
    print(f"the default kept, per seed: {kept}")
    for row in [r for r in by_seed if r != "ktr.fine_tune default"]:
        seeds = sorted(set(default) & set(by_seed[row]))
        diffs = [default[s]["final"] - by_seed[row][s]["final"] for s in seeds]
        print(
            f"default - {row} on seeds {seeds}: {np.mean(diffs):+.3f} "
            f"(per seed {', '.join(f'{d:+.3f}' for d in diffs)})"
        )


def report(results):
    """One setting's table: per seed, mean and wall time per recipe; the
    default's decisions; its margins and wall ratios per seed; the checks.
    Returns the default's mean wall-time ratio to the fixed recipe."""
    print(f"backend {keras.backend.backend()}, batch {BATCH}")
    by_seed = {key: {r["seed"]: r for r in runs} for key, runs in results.items()}
    for key in [k for k in RECIPES if k in results]:
        runs = by_seed[key]
        finals = [r["final"] for r in runs.values()]
        per_seed = ", ".join(f"{s}: {r['final']:.3f}" for s, r in sorted(runs.items()))
        walls = ", ".join(f"{r['wall']:.0f}" for _, r in sorted(runs.items()))
        print(
            f"({key}) {NAMES[key]:36s} mean {np.mean(finals):.3f}  per seed {per_seed}  "
            f"wall s {walls} (mean {np.mean([r['wall'] for r in runs.values()]):.0f})"
        )
    for seed, run in sorted(by_seed.get("n", {}).items()):
        d = run["decision"]
        print(
            f"(n) seed {seed}: kept {d['kept']}, fine-tuned {d['fine_tune_epochs']} of "
            f"{d['fine_tune_planned_epochs']} epochs; held-out probe "
            f"{d['probe_holdout_accuracy']}, curve {d['fine_tune_holdout_curve']}; "
            f"{d.get('fine_tune_stopped')}"
        )
    if "n" not in results:
        return None
    default = by_seed["n"]
    for key in [k for k in RECIPES if k in results and k != "n"]:
        seeds = sorted(set(default) & set(by_seed[key]))
        diffs = [default[s]["final"] - by_seed[key][s]["final"] for s in seeds]
        walls = [default[s]["wall"] / by_seed[key][s]["wall"] for s in seeds]
        print(
            f"(n) - ({key}) on seeds {seeds}: accuracy {np.mean(diffs):+.3f} "
            f"(per seed {', '.join(f'{d:+.3f}' for d in diffs)}); wall ratio "
            f"{np.mean(walls):.2f} (per seed {', '.join(f'{w:.2f}' for w in walls)})"
        )
    others = [k for k in ("c", "d", "e") if k in by_seed]
    if not others:
        return None
    seeds = sorted(set(default).intersection(*(by_seed[k] for k in others)))
    means = {k: np.mean([by_seed[k][s]["final"] for s in seeds]) for k in others}
    best = max(means, key=means.get)
    margin = max(1 / default[seeds[0]]["val_images"], 0.005)
    mean = np.mean([default[s]["final"] for s in seeds])
    under = [s for s in seeds if default[s]["final"] < by_seed[best][s]["final"] - margin]
    print(
        f"check: default mean {mean:.3f} >= best ({best}) {means[best]:.3f} - {margin:.3f}: "
        f"{mean >= means[best] - margin}; seeds below: {under} (at most one)"
    )
    if "c" not in by_seed:
        return None
    ratio = np.mean([default[s]["wall"] for s in seeds]) / np.mean(
        [by_seed["c"][s]["wall"] for s in seeds]
    )
    print(f"check: default wall / fixed wall (means) {ratio:.2f} (bar <= 2 per setting)")
    return float(ratio)


if __name__ == "__main__":
    main()
