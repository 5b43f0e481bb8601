"""Does `ktr.rank` predict fine-tuning? Its scores for the four real
pretrained backbones in ../shared/weights, against the accuracy that
`ktr.fine_tune`'s default reaches with each, on the shared photo sets.

For each data set (hymenoptera, cats_vs_dogs, dtd10; 224 px, TensorFlow):
1. `ktr.rank` of the four backbones, with a cold store (timed), then again
   with the warm one (timed);
2. with --fine-tune, the default `ktr.fine_tune(model, train)` with each
   backbone (seed 0; validation accuracy), saved to --json after each run
   so a long run can stop and resume;
3. with --fixed, the fixed recipe (`adaptive=False`) with the largest
   backbone, timed: the cold ranking's time is reported as a share of it;
4. with --taps, the taps of MobileNetV2-1.0 (its last three blocks, its
   last conv, and the three together as multi-scale features) ranked, and
   a logistic probe at each tap scored on the validation photos;
5. Kendall's tau and the weighted tau (scipy) of each score, and of the
   parameter count, against the fine-tuned accuracy (and, for the taps,
   against the probes' accuracy); whether each score's top choice is the
   best backbone (or within 1 point of it).

    KERAS_BACKEND=tensorflow python bench/rank.py --data hymenoptera --fine-tune \
        --fixed --json rank_hym.json
    python bench/rank.py --merge rank_hym.json rank_cvd.json rank_dtd.json
"""

import argparse
import json
import pathlib
import tempfile
import time

import keras
import numpy as np

import keras_transfer as ktr

SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared"
WEIGHTS = SHARED / "weights"
DATA = {
    "hymenoptera": SHARED / "data" / "hymenoptera_data",
    "cats_vs_dogs": SHARED / "data" / "cats_vs_dogs",
    "dtd10": SHARED / "data" / "dtd10",
}
TAPS = ["block_14", "block_15", "block_16", "last_conv", ["block_15", "block_16", "last_conv"]]
SIZE = (224, 224, 3)
# The candidates: every real pretrained backbone available offline.
CANDIDATES = [
    {
        "name": "mobilenet_v1_0.25",
        "backbone": "mobilenet",
        "backbone_kwargs": {"alpha": 0.25},
        "weights": str(WEIGHTS / "mobilenet_2_5_224_tf_no_top.h5"),
    },
    {
        "name": "mobilenet_v2_0.35",
        "backbone": "mobilenet_v2",
        "backbone_kwargs": {"alpha": 0.35},
        "weights": str(WEIGHTS / "mobilenet_v2_0.35_224_teachable_machine_export.h5"),
    },
    {
        "name": "mobilenet_v2_1.0",
        "backbone": "mobilenet_v2",
        "weights": str(WEIGHTS / "mobilenet_v2_1.0_224_notop_dequant_from_tflite_int8.weights.h5"),
    },
    {
        "name": "mobilenet_v3_small",
        "backbone": "mobilenet_v3_small",
        "weights": str(
            WEIGHTS / "mobilenet_v3_small_1.0_224_notop_dequant_from_tflite_uint8.weights.h5"
        ),
    },
]


def load(root, split):
    data = keras.utils.image_dataset_from_directory(
        root / split, image_size=SIZE[:2], batch_size=64, shuffle=False, verbose=False
    )
    xs, ys = zip(*[(np.asarray(x), np.asarray(y)) for x, y in data])
    return np.concatenate(xs), np.concatenate(ys)


def fine_tuned(candidate, train, val, seed=0, **kwargs):
    """`(validation accuracy, seconds, what was kept)` of `ktr.fine_tune`
    with this backbone: the default recipe, or with `adaptive=False` the
    fixed one."""
    keras.utils.clear_session()
    keras.utils.set_random_seed(seed)
    model = ktr.transfer(
        candidate["backbone"],
        int(train[1].max()) + 1,
        weights=candidate["weights"],
        input_shape=SIZE,
        backbone_kwargs=candidate.get("backbone_kwargs"),
        strategy="fine_tune",
    )
    start = time.perf_counter()
    history = ktr.fine_tune(model, train, verbose=0, seed=seed, **kwargs)
    seconds = time.perf_counter() - start
    kept = getattr(history, "decision", {}).get("kept")
    return float(model.evaluate(*val, verbose=0)[1]), seconds, kept


def tap_probes(candidate, train, val):
    """A logistic probe's validation accuracy at each of `TAPS`."""
    accuracies = {}
    for tap in TAPS:
        keras.utils.clear_session()
        features = ktr.transfer(
            candidate["backbone"],
            weights=candidate["weights"],
            input_shape=SIZE,
            feature_layer=tap,
        )
        fitted = ktr.heads.LogisticHead().fit(ktr.extract_features(features, train, progress=False))
        accuracies[str(tap)] = float(
            fitted.evaluate(ktr.extract_features(features, val, progress=False))
        )
    return accuracies


def run(name, do_fine_tune, do_fixed, do_taps, json_path):
    root = DATA[name]
    result = (
        json.loads(pathlib.Path(json_path).read_text())
        if json_path and pathlib.Path(json_path).is_file()
        else {"data": name}
    )
    candidates = [{**c, "input_shape": SIZE} for c in CANDIDATES]
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        cold = ktr.rank(candidates, root / "train", cache=cache)
        result["cold_seconds"] = time.perf_counter() - start
        start = time.perf_counter()
        warm = ktr.rank(candidates, root / "train", cache=cache)
        result["warm_seconds"] = time.perf_counter() - start
    print(cold)
    print(f"cold {result['cold_seconds']:.1f} s, warm {result['warm_seconds']:.2f} s")
    result["rows"] = cold.to_dict()["rows"]
    result["warm_cached"] = [row["cached"] for row in warm.rows]
    _save(result, json_path)
    if do_fine_tune or do_fixed or do_taps:
        train, val = load(root, "train"), load(root, "val")
    if do_fine_tune:
        tuned = result.setdefault("fine_tuned", {})
        for candidate in CANDIDATES:
            if candidate["name"] in tuned:
                continue
            accuracy, seconds, kept = fine_tuned(candidate, train, val)
            tuned[candidate["name"]] = {"accuracy": accuracy, "seconds": seconds, "kept": kept}
            print(f"  fine_tune {candidate['name']}: {accuracy:.4f} in {seconds:.0f} s ({kept})")
            _save(result, json_path)
    if do_fixed and "fixed" not in result:
        largest = max(result["rows"], key=lambda row: row["parameters"] or 0)["name"]
        candidate = next(c for c in CANDIDATES if c["name"] == largest)
        accuracy, seconds, _ = fine_tuned(candidate, train, val, adaptive=False)
        result["fixed"] = {"name": largest, "accuracy": accuracy, "seconds": seconds}
        print(f"  fixed recipe {largest}: {accuracy:.4f} in {seconds:.0f} s")
        _save(result, json_path)
    if do_taps:  # the probes on the validation photos are kept from an earlier run
        known = result.get("taps", {}).get("probe_val")
        candidate = next(c for c in CANDIDATES if c["name"] == "mobilenet_v2_1.0")
        with tempfile.TemporaryDirectory() as cache:
            start = time.perf_counter()
            ranked = ktr.rank(
                {**candidate, "input_shape": SIZE}, root / "train", layers=TAPS, cache=cache
            )
            seconds = time.perf_counter() - start
        print(ranked)
        result["taps"] = {
            "rows": ranked.to_dict()["rows"],
            "seconds": seconds,
            "probe_val": known or tap_probes(candidate, train, val),
        }
        _save(result, json_path)
    return result


def _save(result, path):
    if path:
        pathlib.Path(path).write_text(json.dumps(result, indent=1))


def report(results):
    from scipy.stats import kendalltau, weightedtau

    scores = list(ktr.transferability.SCORES)
    taus = {score: [] for score in [*scores, "parameters"]}
    for result in results:
        tuned = result.get("fine_tuned", {})
        rows = [r for r in result["rows"] if r["error"] is None and r["name"] in tuned]
        print(f"\n=== {result['data']}: {len(rows)} backbones with a fine-tuned accuracy")
        if len(rows) < 3:
            continue
        truth = np.array([tuned[r["name"]]["accuracy"] for r in rows])
        best = truth.max()
        for r, accuracy in zip(rows, truth):
            print(
                f"  {r['name']:<20} fine-tuned {accuracy:.4f}  "
                + "  ".join(f"{s} {r[s]:.4g}" for s in scores)
                + f"  params {r['parameters']:,}"
            )
        for score in [*scores, "parameters"]:
            values = np.array([r[score] for r in rows], "float64")
            tau = kendalltau(values, truth).statistic
            weighted = weightedtau(values, truth).statistic
            top = truth[int(np.argmax(values))]
            taus[score].append(tau)
            print(
                f"  {score:<11} tau {tau:+.2f}  weighted {weighted:+.2f}  top choice "
                f"{'best' if top == best else f'{best - top:.3f} below the best'}"
            )
        slowest = max(tuned.values(), key=lambda t: t["seconds"])["seconds"]
        print(
            f"  cold ranking {result['cold_seconds']:.0f} s = "
            f"{result['cold_seconds'] / slowest:.2f} of the slowest default fine_tune; warm "
            f"{result['warm_seconds']:.2f} s"
        )
        if "fixed" in result:
            fixed = result["fixed"]
            print(
                f"  cold ranking = {result['cold_seconds'] / fixed['seconds']:.3f} of the fixed "
                f"recipe with {fixed['name']} ({fixed['seconds']:.0f} s, accuracy "
                f"{fixed['accuracy']:.4f})"
            )
        if "taps" in result:
            _report_taps(result["taps"], scores)
    print("\nmean tau over the data sets:")
    for score, values in taus.items():
        if values:
            print(f"  {score:<11} {np.mean(values):+.2f} ({len(values)} data sets)")


def _report_taps(taps, scores):
    from scipy.stats import kendalltau, weightedtau

    rows = [r for r in taps["rows"] if r["error"] is None]
    truth = np.array([taps["probe_val"][r["name"].split(":", 1)[1]] for r in rows])
    print(f"  taps of mobilenet_v2_1.0, ranked in {taps['seconds']:.0f} s (cold):")
    for r, accuracy in zip(rows, truth):
        print(
            f"    {r['name'].split(':', 1)[1]:<40} probe on val {accuracy:.4f}  "
            + "  ".join(f"{s} {r[s]:.4g}" for s in scores)
            + f"  width {r['width']}"
        )
    for score in scores:
        values = np.array([r[score] for r in rows], "float64")
        top = truth[int(np.argmax(values))]
        print(
            f"    {score:<11} tau {kendalltau(values, truth).statistic:+.2f}  weighted "
            f"{weightedtau(values, truth).statistic:+.2f}  top choice "
            f"{'best' if top == truth.max() else f'{truth.max() - top:.3f} below the best'}"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=DATA, default="hymenoptera")
    parser.add_argument("--fine-tune", action="store_true")
    parser.add_argument("--fixed", action="store_true")
    parser.add_argument("--taps", action="store_true")
    parser.add_argument("--json")
    parser.add_argument("--merge", nargs="+", metavar="JSON")
    args = parser.parse_args()
    if args.merge:
        report([json.loads(pathlib.Path(p).read_text()) for p in args.merge])
        return
    if not DATA[args.data].is_dir() or not WEIGHTS.is_dir():
        raise SystemExit(f"skipped: needs {DATA[args.data]} and {WEIGHTS} (../shared)")
    report([run(args.data, args.fine_tune, args.fixed, args.taps, args.json)])


if __name__ == "__main__":
    main()
