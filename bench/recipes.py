"""The recipe benchmark: ktr.fine_tune's default against the simple baselines.

--setting demo: the four strategies of `make demo` (a CNN pre-trained on
clean digit scans, transferred to noisy scans from 10 labels per digit),
one demo run per seed, with the default's margins over training from
scratch and the SVM.

On real photos, at 224 px, batch 32, the same decoded images and seeds for
every recipe, with the real ImageNet MobileNetV2-0.35 (imported from the
Keras 2 export in ../shared/weights) unless said otherwise (--setting):

  hymenoptera   ../shared/data/hymenoptera_data, ants and bees, 245 training photos;
  cats_vs_dogs  ../shared/data/cats_vs_dogs, 800 training photos, near ImageNet;
  dtd10         ../shared/data/dtd10, textures, 10 classes, 500 training photos;
  mnv2_1.0      hymenoptera with MobileNetV2-1.0 (the dequantized .weights.h5).

The recipes (every setting runs (e), (c), (d) and (n); (a), (b) and (g)
read the 0.35 export's layers, and --no-plain skips (a) and (b)):

  (n) ktr.fine_tune(model, train): the adaptive default, nothing else given
      (validation_data is passed for the curves only);
  (a) the TensorFlow tutorial in plain Keras: frozen, Adam 1e-4, 10 epochs;
      then layers[100:] with RMSprop 1e-5, 10 epochs;
  (b) the Keras guide in plain Keras: frozen, Adam 1e-3, 20 epochs; then all
      layers with Adam 1e-5, 10 epochs;
  (c) ktr.fine_tune's fixed recipe, the default before (1 head epoch, 5
      unfrozen epochs, base_lr 2e-3, lr_mult 100, passed explicitly);
  (c2) the fixed recipe with a 5-epoch head phase and a gentler unfrozen phase;
  (d) ktr.transfer(strategy="feature_extraction") with GradualUnfreezing;
  (e) a logistic-regression probe on extracted features;
  (g) the best linear read-out found of the frozen backbone (several taps,
      mirrored training images, three regularisation strengths);
  (f) a cost check: the step time of GradualUnfreezing's first (head-only)
      phase against full fine-tuning.

Prints validation accuracy (mean (min-max) over seeds, the final model's)
and wall time per recipe, the default's decisions, and its per-seed
accuracy differences and wall-time ratios against every other recipe on the
seeds both ran. The whole benchmark is long on 2 cores: run one seed (and
setting) per invocation with --json, then --merge the files.

    KERAS_BACKEND=tensorflow python bench/recipes.py --seeds 0 --only n e a b d c \
        --json hym0.json [--setting cats_vs_dogs]
    python bench/recipes.py --merge hym0.json hym1.json hym2.json   # one table
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
from keras_transfer import demo

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
SETTINGS = {  # --setting: (photo folder with train/ and val/, backbone)
    "hymenoptera": (SHARED / "data" / "hymenoptera_data", "mnv2_0.35"),
    "cats_vs_dogs": (SHARED / "data" / "cats_vs_dogs", "mnv2_0.35"),
    "dtd10": (SHARED / "data" / "dtd10", "mnv2_0.35"),
    "mnv2_1.0": (SHARED / "data" / "hymenoptera_data", "mnv2_1.0"),
}
DATA, BACKBONE = SETTINGS["hymenoptera"]
ALPHA, WEIGHTS = BACKBONES[BACKBONE]
NUM_CLASSES = 2
SIZE = 224
BATCH = 32
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def load(split):
    data = keras.utils.image_dataset_from_directory(
        DATA / split, image_size=(SIZE, SIZE), batch_size=64, shuffle=False, verbose=False
    )
    xs, ys = zip(*[(np.asarray(x), np.asarray(y)) for x, y in data])
    return np.concatenate(xs), np.concatenate(ys)


def augmentation():
    return [keras.layers.RandomFlip("horizontal"), keras.layers.RandomRotation(0.2)]


def plain_base():
    """keras.applications.MobileNetV2 with the exported ImageNet weights."""
    base = keras.applications.MobileNetV2(
        input_shape=(SIZE, SIZE, 3), alpha=ALPHA, include_top=False, weights=None
    )
    if BACKBONE == "mnv2_0.35":
        ktr.load_legacy_h5(base, WEIGHTS)  # the Keras 2 export
    else:
        base.load_weights(WEIGHTS)
    return base


def plain_model(base):
    """The tutorials' model: augment, preprocess, base(training=False), head."""
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.Sequential(augmentation())(inputs)
    x = keras.applications.mobilenet_v2.preprocess_input(x)
    x = base(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    return keras.Model(inputs, keras.layers.Dense(NUM_CLASSES)(x))


def _fit(model, data, epochs, initial_epoch=0):
    (x, y), (xv, yv) = data
    model.fit(
        x,
        y,
        batch_size=BATCH,
        epochs=epochs,
        initial_epoch=initial_epoch,
        validation_data=(xv, yv),
        verbose=0,
    )
    return model.evaluate(xv, yv, verbose=0)[1]


def plain_recipe(data, frozen, frozen_epochs, tuned, tuned_epochs, frozen_layers=0):
    """Frozen phase, then `base.trainable = True` (but the first
    `frozen_layers`), recompile, train on: as both tutorials write it."""
    base = plain_base()
    base.trainable = False
    model = plain_model(base)
    model.compile(frozen, LOSS, metrics=["accuracy"])
    first = _fit(model, data, frozen_epochs)
    base.trainable = True
    for layer in base.layers[:frozen_layers]:
        layer.trainable = False
    model.compile(tuned, LOSS, metrics=["accuracy"])
    return first, _fit(model, data, frozen_epochs + tuned_epochs, initial_epoch=frozen_epochs)


def recipe_a(data):
    return plain_recipe(
        data, keras.optimizers.Adam(1e-4), 10, keras.optimizers.RMSprop(1e-5), 10, frozen_layers=100
    )


def recipe_b(data):
    return plain_recipe(data, keras.optimizers.Adam(1e-3), 20, keras.optimizers.Adam(1e-5), 10)


def kt_model(strategy, augment=True):
    return ktr.transfer(
        functools.partial(keras.applications.MobileNetV2, alpha=ALPHA),
        NUM_CLASSES,
        weights=str(WEIGHTS),
        input_shape=(SIZE, SIZE, 3),
        strategy=strategy,
        augmentation=augmentation() if augment else None,
    )


def recipe_n(data):
    """The default as a user meets it: `transfer(..., strategy="fine_tune")`
    with no `augmentation=`, then `ktr.fine_tune(model, train)` and nothing
    else (the adaptive recipe, with its own default augmentation). The
    validation set is passed for the curves only."""
    (x, y), (xv, yv) = data
    model = kt_model("fine_tune", augment=False)
    history = ktr.fine_tune(model, (x, y), validation_data=(xv, yv), verbose=0)
    CURVES.append(history.history["val_accuracy"])
    DECISIONS.append(history.decision)
    return history.decision["probe_holdout_accuracy"], model.evaluate(xv, yv, verbose=0)[1]


def recipe_c(data, **kwargs):
    """The fixed recipe, `fine_tune`'s default before the adaptive one."""
    (x, y), (xv, yv) = data
    model = kt_model("fine_tune")
    kwargs = {"epochs": 5, "freeze_epochs": 1, "base_lr": 2e-3, "lr_mult": 100, **kwargs}
    history = ktr.fine_tune(
        model, (x, y), validation_data=(xv, yv), batch_size=BATCH, verbose=0, **kwargs
    )
    CURVES.append(history.history["val_accuracy"])
    head = history.history["val_accuracy"][history.phases[0]["epochs"] - 1]
    return head, model.evaluate(xv, yv, verbose=0)[1]


def recipe_c2(data):
    """What was tried beyond the defaults: a head trained to convergence
    first (5 epochs), then a gentler unfrozen phase (peak 5e-4, stem 10x
    lower)."""
    return recipe_c(data, freeze_epochs=5, epochs=3, base_lr=1e-3, lr_mult=10)


def recipe_d(data, epochs=8, start_epoch=5):
    """Head for 5 epochs, then the top block, then the next, at 0.1x and
    0.01x the rate: the best of the GradualUnfreezing settings tried."""
    (x, y), (xv, yv) = data
    model = kt_model("feature_extraction")
    model.compile(keras.optimizers.Adam(1e-3), LOSS, metrics=["accuracy"])
    history = model.fit(
        x,
        y,
        batch_size=BATCH,
        epochs=epochs,
        validation_data=(xv, yv),
        verbose=0,
        callbacks=[
            ktr.callbacks.GradualUnfreezing(
                start_epoch=start_epoch, max_blocks=2, lr_factor=0.1, verbose=0
            )
        ],
    )
    CURVES.append(history.history["val_accuracy"])
    return history.history["val_accuracy"][start_epoch - 1], model.evaluate(xv, yv, verbose=0)[1]


def recipe_e(data):
    (x, y), (xv, yv) = data
    features = ktr.transfer(
        functools.partial(keras.applications.MobileNetV2, alpha=ALPHA),
        weights=str(WEIGHTS),
        input_shape=(SIZE, SIZE, 3),
    )
    train = ktr.extract_features(features, (x, y), progress=False)
    val = ktr.extract_features(features, (xv, yv), progress=False)
    head = ktr.heads.LogisticHead().fit(train)
    return None, head.evaluate(val)


def recipe_g(data, taps=("block_13_expand_relu", "block_16_project_BN", "out_relu")):
    """Why the bar is hard here: the best linear read-out of the frozen
    backbone, over sets of pooled taps, trained on the images and their
    mirror images (scikit-learn logistic regression, C in 0.01..1)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    (x, y), (xv, yv) = data
    base = plain_base()
    pooled = [keras.layers.GlobalAveragePooling2D()(base.get_layer(t).output) for t in taps]
    features = keras.Model(base.input, pooled)
    pre = keras.applications.mobilenet_v2.preprocess_input

    def extract(images):
        return [np.asarray(f) for f in features.predict(pre(images.copy()), verbose=0)]

    train, mirrored, val = extract(x), extract(x[:, :, ::-1]), extract(xv)
    best = 0.0
    for chosen in ([2], [1, 2], [0, 2], [0, 1, 2]):
        a = np.concatenate(
            [
                np.concatenate([train[i] for i in chosen], 1),
                np.concatenate([mirrored[i] for i in chosen], 1),
            ]
        )
        b = np.concatenate([val[i] for i in chosen], 1)
        scale = StandardScaler().fit(a)
        for c in (0.01, 0.1, 1.0):
            fitted = LogisticRegression(C=c, max_iter=3000).fit(
                scale.transform(a), np.concatenate([y, y])
            )
            best = max(best, float(fitted.score(scale.transform(b), yv)))
    return None, best


def step_cost(data, steps=5):
    """Seconds per training step: head-only (GradualUnfreezing's first phase)
    against full fine-tuning, same model, same batches."""
    (x, y), _ = data
    times = {}
    for name, blocks in (("head_only", 0), ("full", "all")):
        model = kt_model("fine_tune")
        ktr.unfreeze(model, blocks=blocks)
        model.compile(keras.optimizers.Adam(1e-3), LOSS)
        model.train_on_batch(x[:BATCH], y[:BATCH])  # compile
        start = time.perf_counter()
        for i in range(steps):
            model.train_on_batch(x[i * BATCH : (i + 1) * BATCH], y[i * BATCH : (i + 1) * BATCH])
        times[name] = (time.perf_counter() - start) / steps
    return times


CURVES = []  # per-epoch validation accuracy of the keras-transfer recipes
DECISIONS = []  # the adaptive recipe's decision records
RECIPES = {
    "n": recipe_n,
    "a": recipe_a,
    "b": recipe_b,
    "c": recipe_c,
    "c2": recipe_c2,
    "d": recipe_d,
    "e": recipe_e,
    "g": recipe_g,
}
NAMES = {
    "n": "ktr.fine_tune() (adaptive default)",
    "a": "TF tutorial (plain Keras)",
    "b": "Keras guide (plain Keras)",
    "c": "ktr.fine_tune, fixed recipe",
    "c2": "ktr.fine_tune, long head phase",
    "d": "GradualUnfreezing",
    "e": "logistic probe",
    "g": "best linear read-out (ceiling)",
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", nargs="+", default=list(RECIPES) + ["f"])
    parser.add_argument(
        "--no-plain", action="store_true", help="skip (a) and (b), the slow plain-Keras baselines"
    )
    parser.add_argument("--setting", choices=[*SETTINGS, "demo"], default="hymenoptera")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument(
        "--merge", nargs="+", metavar="JSON", help="print the table of earlier --json runs"
    )
    args = parser.parse_args()
    if args.merge:
        settings = {}
        for path in args.merge:
            for key, runs in json.loads(pathlib.Path(path).read_text())["runs"].items():
                for run in runs:
                    setting = settings.setdefault(run.get("setting", "hymenoptera"), {})
                    setting.setdefault(key, []).append(run)
        for setting, results in settings.items():
            print(f"\n=== {setting}")
            (report_demo if setting == "demo" else report)(results)
        return
    if args.setting == "demo":
        results = run_demo(args.seeds, args.json)
        report_demo(results)
        return
    global DATA, BACKBONE, ALPHA, WEIGHTS, NUM_CLASSES
    DATA, BACKBONE = SETTINGS[args.setting]
    ALPHA, WEIGHTS = BACKBONES[BACKBONE]
    if not DATA.is_dir() or not WEIGHTS.is_file():
        raise SystemExit(f"skipped: needs {DATA} and {WEIGHTS} (../shared)")
    data = load("train"), load("val")
    NUM_CLASSES = int(data[0][1].max()) + 1
    results = {}
    for seed in args.seeds:  # seed-major: one seed's recipes share the machine's state
        for key in [k for k in RECIPES if k in args.only]:
            if args.no_plain and key in ("a", "b"):
                continue
            keras.utils.clear_session()
            keras.utils.set_random_seed(seed)
            start = time.perf_counter()
            CURVES.clear()
            DECISIONS.clear()
            first, final = RECIPES[key](data)
            run = {
                "setting": args.setting,
                "seed": seed,
                "first_phase": first,
                "final": float(final),
                "wall": time.perf_counter() - start,
                "val_curve": [round(float(a), 3) for c in CURVES for a in c],
            }
            if DECISIONS:
                run["decision"] = DECISIONS[0]
            results.setdefault(key, []).append(run)
            print(f"  ({key}) seed {seed}: {run}", flush=True)
            if args.json:  # after every run, so a long benchmark can stop and merge
                pathlib.Path(args.json).write_text(json.dumps({"runs": results}, indent=1))
    if "f" in args.only:
        keras.utils.clear_session()
        cost = step_cost(data)
        print(
            f"(f) step time, head-only phase {cost['head_only']:.3f} s vs full fine-tuning "
            f"{cost['full']:.3f} s: ratio {cost['head_only'] / cost['full']:.2f} (bar < 1)"
        )
    report(results)


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
    """The table: mean (min-max) over seeds, wall time, and the default's
    margins, per seed, over the others on the seeds both ran."""
    print(f"\nbackend {keras.backend.backend()}, {SIZE} px, batch {BATCH}")
    print(f"{'recipe':40s} {'seeds':>7s} {'val acc':>8s} {'(min-max)':>13s} {'wall s':>7s}")
    by_seed = {key: {r["seed"]: r for r in runs} for key, runs in results.items()}
    for key in [k for k in RECIPES if k in results]:
        runs = list(by_seed[key].values())
        finals = [r["final"] for r in runs]
        per_seed = ", ".join(f"{s}: {r['final']:.3f}" for s, r in sorted(by_seed[key].items()))
        print(
            f"({key:2s}) {NAMES[key]:35s} {len(runs):7d} {np.mean(finals):8.3f} "
            f"({min(finals):.3f}-{max(finals):.3f}) {np.mean([r['wall'] for r in runs]):7.1f}"
            f"   per seed {per_seed}"
        )
    for run in by_seed.get("n", {}).values():
        d = run["decision"]
        print(
            f"(n) seed {run['seed']}: kept {d['kept']}; held-out probe "
            f"{d['probe_holdout_accuracy']}, fine-tuned {d['fine_tune_holdout_accuracy']}"
        )
    if "n" not in results:
        return
    for key in [k for k in RECIPES if k in results and k not in ("n", "g")]:
        seeds = sorted(set(by_seed["n"]) & set(by_seed[key]))
        if not seeds:
            continue
        diffs = [by_seed["n"][s]["final"] - by_seed[key][s]["final"] for s in seeds]
        walls = [by_seed["n"][s]["wall"] / by_seed[key][s]["wall"] for s in seeds]
        print(
            f"(n) - ({key}) on seeds {seeds}: accuracy {np.mean(diffs):+.3f} "
            f"(per seed {', '.join(f'{d:+.3f}' for d in diffs)}); wall ratio {np.mean(walls):.2f}"
        )


if __name__ == "__main__":
    main()
