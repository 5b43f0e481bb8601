"""Per-step cost of transfer() against the hand-written Keras-guide model.

Both models use the same backbone (MobileNetV2, alpha 0.35, random weights:
speed does not depend on their values), the same head (Dropout 0.2, Dense)
and the same data; runs alternate to share the machine's noise. Prints the
throughput ratio transfer()/guide for both strategies: 1.00 means free, and
the bar is >= 0.97.

    KERAS_BACKEND=jax python bench/overhead.py [--image-size 96] [--repeats 5]
"""

import argparse
import statistics
import time

import keras
import numpy as np

import keras_transfer as kt


def guide_model(size, trainable):
    """The Keras transfer-learning guide's model, written by hand."""
    base = keras.applications.MobileNetV2(alpha=0.35, include_top=False, weights=None,
                                          input_shape=(size, size, 3))
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


def kt_model(size, trainable):
    return kt.transfer(keras.applications.MobileNetV2, 2, weights=None,
                       input_shape=(size, size, 3), backbone_kwargs={"alpha": 0.35},
                       strategy="fine_tune" if trainable else "feature_extraction")


def images_per_second(model, x, y, batch_size, epochs=2):
    model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0)  # compile, warm up
    start = time.perf_counter()
    model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0)
    return epochs * len(x) / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (args.images, args.image_size, args.image_size, 3)).astype("float32")
    y = rng.integers(0, 2, args.images)
    print(f"backend {keras.backend.backend()}, {args.images} images of {args.image_size} px, "
          f"batch {args.batch_size}, median of {args.repeats} alternating runs")
    worst = None
    for strategy, trainable in (("feature_extraction", False), ("fine_tune", True)):
        models = {"guide": guide_model(args.image_size, trainable),
                  "transfer": kt_model(args.image_size, trainable)}
        for model in models.values():
            model.compile(keras.optimizers.Adam(1e-4),
                          keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        assert len(models["guide"].trainable_weights) == len(models["transfer"].trainable_weights)
        rates = {name: [] for name in models}
        for _ in range(args.repeats):
            for name, model in models.items():
                rates[name].append(images_per_second(model, x, y, args.batch_size))
        guide, ours = (statistics.median(rates[n]) for n in ("guide", "transfer"))
        ratio = ours / guide
        worst = ratio if worst is None else min(worst, ratio)
        print(f"{strategy:>18}: guide {guide:7.1f} img/s, transfer() {ours:7.1f} img/s, "
              f"ratio {ratio:.3f}")
    print(f"worst ratio {worst:.3f} ({'meets' if worst >= 0.97 else 'misses'} the 0.97 bar)")


if __name__ == "__main__":
    main()
