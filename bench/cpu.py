"""CPU figures of the speed issue, all ratios from one run.

1. `fit` throughput of a `transfer()` model against the same model written
   by hand (the Keras transfer-learning guide's), both strategies; the bar
   is within 3% (ratio >= 0.97). `--vit`: the same for a KerasHub ViT
   (random weights, fine-tuned), against the ViTBackbone written by hand
   with plain Keras and keras-hub (class token, dropout, Dense).
2. Feature extraction into an on-disk store (`extract_features(cache=...)`,
   first run, nothing cached) against plain `model.predict` of the same
   feature model over the same uint8 images; the bar is >= 1.0.
3. `mixed_precision="auto"` against float32: "auto" must pick float32 on a
   CPU, so the ratio is 1 within noise; mixed_bfloat16, which "auto" avoids
   there, is printed for scale.

Same backbone everywhere (MobileNetV2, alpha 0.35, random weights: speed
does not depend on their values); runs alternate to share the machine's
noise; each figure is the median of the `--repeats` paired ratios, printed
with their min and max so that a reader can tell noise from a gap.

    KERAS_BACKEND=tensorflow python bench/cpu.py [--image-size 96] [--repeats 3] [--only-fit]
    KERAS_BACKEND=tensorflow python bench/cpu.py --vit --image-size 64 --repeats 5
"""

import argparse
import json
import statistics
import tempfile
import time

import keras
import numpy as np

import keras_transfer as ktr


def guide_model(size, trainable):
    """The Keras transfer-learning guide's model, written by hand."""
    base = keras.applications.MobileNetV2(
        alpha=0.35, include_top=False, weights=None, input_shape=(size, size, 3)
    )
    base.trainable = trainable
    if trainable:  # the guide's fine-tuning: BatchNorm stays frozen
        for layer in base.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = base(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    return keras.Model(inputs, keras.layers.Dense(2)(x))


def kt_model(size, trainable, mixed_precision="auto", num_classes=2):
    return ktr.transfer(
        keras.applications.MobileNetV2,
        num_classes,
        weights=None,
        input_shape=(size, size, 3),
        backbone_kwargs={"alpha": 0.35},
        strategy="fine_tune" if trainable else "feature_extraction",
        mixed_precision=mixed_precision,
    )


def vit_backbone(size):
    import keras_hub  # the keras-hub extra

    keras.utils.set_random_seed(0)
    return keras_hub.models.ViTBackbone(
        image_shape=(size, size, 3),
        patch_size=8,
        num_layers=4,
        num_heads=4,
        hidden_dim=64,
        mlp_dim=128,
    )


def vit_by_hand(size):
    """The ViT written by hand: [-1, 1] pixels, the backbone, its class token."""
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = vit_backbone(size)(x)[:, 0, :]
    x = keras.layers.Dropout(0.2)(x)
    return keras.Model(inputs, keras.layers.Dense(2)(x))


def vit_transfer(size):
    return ktr.transfer(vit_backbone(size), 2, strategy="fine_tune")


class _BatchTimes(keras.callbacks.Callback):
    """Seconds of each training step (the data's next batch included), after
    the first epoch, which compiles."""

    def __init__(self):
        super().__init__()
        self.seconds, self.epoch = [], 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch > 0:
            self.seconds.append(time.perf_counter() - self.start)


def fit_rate(model, x, y, batch_size, epochs=4):
    """Images/s of `fit`'s steady-state step: batch size over the lower
    quartile of the step times after the first epoch. One `fit`, so neither
    the compile nor `fit`'s set-up counts; the quartile, not the mean, as
    this machine's cores come and go (step times here jump between two
    levels, a factor of two apart), and the same estimator serves both
    models."""
    timer = _BatchTimes()
    model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0, callbacks=[timer])
    return batch_size / float(np.quantile(timer.seconds, 0.25))


def alternate(runs, repeats):
    """{name: [rate per repeat]}, the runs interleaved."""
    rates = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            rates[name].append(run())
    return rates


def ratio(rates, name, baseline):
    """(median, min, max) of the per-repeat ratios `name / baseline`: each
    pair ran back to back, so the spread shows the machine's noise."""
    pairs = [a / b for a, b in zip(rates[name], rates[baseline])]
    return statistics.median(pairs), min(pairs), max(pairs)


def spread(figure):
    median, low, high = figure
    return f"{median:.3f} (min {low:.3f}, max {high:.3f})"


def compiled(model):
    model.compile(
        keras.optimizers.Adam(1e-4), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only-fit", action="store_true", help="section 1 only")
    parser.add_argument("--vit", action="store_true", help="section 1 for a KerasHub ViT only")
    parser.add_argument(
        "--epochs",
        type=int,
        default=4,
        help="epochs per timed fit; the fastest after the first counts (more: less noise)",
    )
    args = parser.parse_args()
    size, batch = args.image_size, args.batch_size
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (args.images, size, size, 3)).astype("uint8")
    y = rng.integers(0, 2, args.images)
    print(
        f"backend {keras.backend.backend()}, device {ktr.precision.accelerator()[0]}, "
        f"{args.images} uint8 images of {size} px, batch {batch}, median of "
        f"{args.repeats} alternating runs"
    )
    figures = {}
    if args.vit:
        models = {"hand": compiled(vit_by_hand(size)), "transfer": compiled(vit_transfer(size))}
        assert len(models["hand"].trainable_weights) == len(models["transfer"].trainable_weights)
        rates = alternate(
            {name: lambda m=m: fit_rate(m, x, y, batch, args.epochs) for name, m in models.items()},
            args.repeats,
        )
        figures["fit_vit"] = ratio(rates, "transfer", "hand")
        print(
            f"1. fit, ViT fine-tuned: by hand {statistics.median(rates['hand']):7.1f} img/s, "
            f"transfer() {statistics.median(rates['transfer']):7.1f} img/s, ratio "
            f"{spread(figures['fit_vit'])}",
            flush=True,
        )
        return _report(figures, {"fit_vit": 0.97})

    for strategy, trainable in (("feature_extraction", False), ("fine_tune", True)):
        models = {
            "guide": compiled(guide_model(size, trainable)),
            "transfer": compiled(kt_model(size, trainable)),
        }
        assert len(models["guide"].trainable_weights) == len(models["transfer"].trainable_weights)
        rates = alternate(
            {name: lambda m=m: fit_rate(m, x, y, batch, args.epochs) for name, m in models.items()},
            args.repeats,
        )
        figures[f"fit_{strategy}"] = ratio(rates, "transfer", "guide")
        print(
            f"1. fit, {strategy:>18}: hand-written {statistics.median(rates['guide']):7.1f} "
            f"img/s, transfer() {statistics.median(rates['transfer']):7.1f} img/s, ratio "
            f"{spread(figures[f'fit_{strategy}'])}",
            flush=True,
        )
    if args.only_fit:
        return _report(figures, {"fit_feature_extraction": 0.97, "fit_fine_tune": 0.97})

    features = kt_model(size, False, num_classes=None)
    features.predict(x[:batch], batch_size=batch, verbose=0)  # compile both paths
    ktr.extract_features(features, x[:batch], batch_size=batch, progress=False)

    def predict():
        start = time.perf_counter()
        features.predict(x, batch_size=batch, verbose=0)
        return len(x) / (time.perf_counter() - start)

    def store():
        with tempfile.TemporaryDirectory() as cache:
            start = time.perf_counter()
            ktr.extract_features(features, x, batch_size=batch, cache=cache, progress=False)
            return len(x) / (time.perf_counter() - start)

    rates = alternate({"predict": predict, "store": store}, args.repeats)
    figures["extract_store_vs_predict"] = ratio(rates, "store", "predict")
    print(
        f"2. extraction: model.predict {statistics.median(rates['predict']):7.1f} img/s, "
        f"extract_features into a store {statistics.median(rates['store']):7.1f} img/s, "
        f"ratio {spread(figures['extract_store_vs_predict'])}"
    )

    policies = {"float32": "float32", "auto": "auto", "mixed_bfloat16": "mixed_bfloat16"}
    # The frozen strategy's fit: the backbone's forward pass, where the policy acts.
    models = {name: compiled(kt_model(size, False, policy)) for name, policy in policies.items()}
    print(f"   'auto' resolves to {ktr.precision.resolve('auto')!r} here")
    rates = alternate(
        {name: lambda m=m: fit_rate(m, x, y, batch) for name, m in models.items()}, args.repeats
    )
    figures["auto_vs_float32"] = ratio(rates, "auto", "float32")
    figures["bfloat16_vs_float32"] = ratio(rates, "mixed_bfloat16", "float32")
    print(
        f"3. feature-extraction fit: float32 {statistics.median(rates['float32']):7.1f} img/s, "
        f"auto {statistics.median(rates['auto']):7.1f} img/s (ratio "
        f"{spread(figures['auto_vs_float32'])}); mixed_bfloat16 "
        f"{statistics.median(rates['mixed_bfloat16']):7.1f} img/s (ratio "
        f"{spread(figures['bfloat16_vs_float32'])}, what 'auto' avoids on CPU)"
    )

    _report(
        figures,
        {
            "fit_feature_extraction": 0.97,
            "fit_fine_tune": 0.97,
            "extract_store_vs_predict": 1.0,
            "auto_vs_float32": 0.97,
        },
    )


def _report(figures, bars):
    """Each bar is judged on the median ratio; min and max show the noise."""
    for name, bar in bars.items():
        median = figures[name][0]
        print(
            f"   {name}: {spread(figures[name])} {'meets' if median >= bar else 'misses'} "
            f"the {bar} bar"
        )
    print(json.dumps({"backend": keras.backend.backend(), **figures}))


if __name__ == "__main__":
    main()
