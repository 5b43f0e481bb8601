"""Training recipes on real photos: plain-Keras tutorials against keras-transfer.

On ../shared/data/hymenoptera_data with the real ImageNet MobileNetV2-0.35
(imported from the Keras 2 export in ../shared/weights), at 224 px, batch 32,
RandomFlip + RandomRotation augmentation, the same decoded images and seeds
for every recipe:

  (a) the TensorFlow tutorial in plain Keras: frozen, Adam 1e-4, 10 epochs;
      then layers[100:] with RMSprop 1e-5, 10 epochs;
  (b) the Keras guide in plain Keras: frozen, Adam 1e-3, 20 epochs; then all
      layers with Adam 1e-5, 10 epochs;
  (c) ktr.fine_tune with its defaults (1 head epoch, 5 unfrozen epochs);
  (c2) ktr.fine_tune with a 5-epoch head phase and a gentler unfrozen phase;
  (d) ktr.transfer(strategy="feature_extraction") with GradualUnfreezing;
  (e) a logistic-regression probe on extracted features;
  (g) the best linear read-out found of the frozen backbone (several taps,
      mirrored training images, three regularisation strengths): how far
      frozen features go on this data;
  (f) a cost check: the step time of GradualUnfreezing's first (head-only)
      phase against full fine-tuning.

Prints validation accuracy (mean over seeds, the final epoch's, not the
best) and wall time per recipe, and the bar: (c) or (d) >= 0.93, in no more
wall time than (a), above the best of (a), (b) and (e).

    KERAS_BACKEND=tensorflow python bench/recipes.py [--seeds 0 1 2] [--only c d]
"""

import argparse
import functools
import json
import pathlib
import time

import keras
import numpy as np

import keras_transfer as ktr

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "hymenoptera_data"
WEIGHTS = ROOT.parent / "shared" / "weights" / "mobilenet_v2_0.35_224_teachable_machine_export.h5"
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
        input_shape=(SIZE, SIZE, 3), alpha=0.35, include_top=False, weights=None
    )
    ktr.load_legacy_h5(base, WEIGHTS)
    return base


def plain_model(base):
    """The tutorials' model: augment, preprocess, base(training=False), head."""
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.Sequential(augmentation())(inputs)
    x = keras.applications.mobilenet_v2.preprocess_input(x)
    x = base(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    return keras.Model(inputs, keras.layers.Dense(2)(x))


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


def kt_model(strategy):
    return ktr.transfer(
        functools.partial(keras.applications.MobileNetV2, alpha=0.35),
        2,
        weights=str(WEIGHTS),
        input_shape=(SIZE, SIZE, 3),
        strategy=strategy,
        augmentation=augmentation(),
    )


def recipe_c(data, **kwargs):
    (x, y), (xv, yv) = data
    model = kt_model("fine_tune")
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
        functools.partial(keras.applications.MobileNetV2, alpha=0.35),
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
RECIPES = {
    "a": recipe_a,
    "b": recipe_b,
    "c": recipe_c,
    "c2": recipe_c2,
    "d": recipe_d,
    "e": recipe_e,
    "g": recipe_g,
}
NAMES = {
    "a": "TF tutorial (plain Keras)",
    "b": "Keras guide (plain Keras)",
    "c": "ktr.fine_tune defaults",
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
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if not DATA.is_dir() or not WEIGHTS.is_file():
        raise SystemExit(f"needs {DATA} and {WEIGHTS}")
    data = load("train"), load("val")
    results = {}
    for key in [k for k in RECIPES if k in args.only and not (args.no_plain and k in ("a", "b"))]:
        runs = []
        for seed in args.seeds:
            keras.utils.clear_session()
            keras.utils.set_random_seed(seed)
            start = time.perf_counter()
            CURVES.clear()
            first, final = RECIPES[key](data)
            runs.append(
                {
                    "seed": seed,
                    "first_phase": first,
                    "final": float(final),
                    "wall": time.perf_counter() - start,
                    "val_curve": [round(float(a), 3) for c in CURVES for a in c],
                }
            )
            print(f"  ({key}) seed {seed}: {runs[-1]}", flush=True)
        results[key] = runs
    print(f"\nbackend {keras.backend.backend()}, {SIZE} px, batch {BATCH}, seeds {args.seeds}")
    print(f"{'recipe':34s} {'first phase':>11s} {'val acc':>8s} {'(min-max)':>13s} {'wall s':>7s}")
    summary = {}
    for key, runs in results.items():
        finals = [r["final"] for r in runs]
        firsts = [r["first_phase"] for r in runs if r["first_phase"] is not None]
        wall = float(np.mean([r["wall"] for r in runs]))
        summary[key] = {"acc": float(np.mean(finals)), "wall": wall}
        first = f"{np.mean(firsts):.3f}" if firsts else "-"
        print(
            f"({key:2s}) {NAMES[key]:29s} {first:>11s} {np.mean(finals):8.3f} "
            f"({min(finals):.3f}-{max(finals):.3f}) {wall:7.1f}"
        )
    if "f" in args.only:
        keras.utils.clear_session()
        cost = step_cost(data)
        print(
            f"(f) step time, head-only phase {cost['head_only']:.3f} s vs full fine-tuning "
            f"{cost['full']:.3f} s: ratio {cost['head_only'] / cost['full']:.2f} (bar < 1)"
        )
        summary["f"] = cost
    for key in [k for k in ("c", "c2", "d") if k in results]:
        curve = np.mean([r["val_curve"] for r in results[key]], axis=0)
        print(f"({key}) mean val acc per epoch: {np.round(curve, 3).tolist()}")
    if all(k in summary for k in "abce") or all(k in summary for k in "abde"):
        best_plain = max(summary[k]["acc"] for k in "abe")
        for key in [k for k in ("c", "c2", "d") if k in summary]:
            s = summary[key]
            print(
                f"bar ({key}): acc {s['acc']:.3f} >= 0.93: {s['acc'] >= 0.93}; "
                f"wall {s['wall']:.0f} s <= (a) {summary['a']['wall']:.0f} s "
                f"(ratio {s['wall'] / summary['a']['wall']:.2f}): "
                f"{s['wall'] <= summary['a']['wall']}; above best of a, b, e "
                f"({best_plain:.3f}): {s['acc'] > best_plain}"
            )
    if args.json:
        pathlib.Path(args.json).write_text(
            json.dumps({"runs": results, "summary": summary}, indent=1)
        )


if __name__ == "__main__":
    main()
