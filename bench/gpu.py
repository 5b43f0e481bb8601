"""One-GPU speed of keras-transfer against plain Keras and PyTorch eager.

All figures come from one process run, as ratios against baselines measured
in it, and are written as JSON lines (`--out`). Per model (ResNet50 and
MobileNetV2, random weights: speed does not depend on their values):

- plain Keras 3 frozen extraction, synthetic data resident on the device,
  under the model's dtype policy (the reference);
- `ktr.extract_features` of a `transfer()` feature model from host uint8
  arrays (they cross the bus as uint8 and are cast on the device); goal:
  >= 0.90 of the reference;
- plain Keras full fine-tuning (`train_on_batch`, data on the device) and
  `transfer(strategy="fine_tune")` through `model.fit` from host uint8
  arrays, Adam, batch 128;
- PyTorch eager fine-tuning (torchvision's model, bfloat16 autocast,
  channels-last, data on the device) where torch and torchvision are there;
  goal: `transfer()` fit / PyTorch eager >= 1.0 for ResNet50;
- the share of the card's peak bfloat16 rate that `fit` reaches (ResNet50
  fine-tuning is about 25 GFLOP per image, forward and backward).

Runs on the JAX backend, the one a GPU machine without TensorFlow has:

    KERAS_BACKEND=jax python bench/gpu.py --out gpu.jsonl          # ~4 min, H100/H200
    KERAS_BACKEND=jax python bench/gpu.py --tiny                   # CPU check of the script
"""

import argparse
import json
import os
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_transfer as ktr  # noqa: E402

# Dense bfloat16 tensor-core peak, FLOP/s, by device name.
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L4": 121e12}
FLOP_PER_IMAGE = {"ResNet50": 25e9}  # fine-tuning: about 3x the 4.1 GFLOP forward, x2 MAC
TORCHVISION = {"ResNet50": "resnet50", "MobileNetV2": "mobilenet_v2"}


def sync(x):
    import jax

    return jax.block_until_ready(x)


def rate(run, images, repeats):
    """Images/s of `run()` (after one untimed warm-up call)."""
    sync(run())
    start = time.perf_counter()
    for _ in range(repeats):
        sync(run())
    return repeats * images / (time.perf_counter() - start)


def plain_extraction(constructor, x_device, repeats):
    import jax

    model = constructor(
        include_top=False, weights=None, pooling="avg", input_shape=x_device.shape[1:]
    )
    step = jax.jit(lambda tv, ntv, x: model.stateless_call(tv, ntv, x, training=False)[0])
    tv = [v.value for v in model.trainable_variables]
    ntv = [v.value for v in model.non_trainable_variables]
    return rate(lambda: step(tv, ntv, x_device), len(x_device), repeats)


def plain_fine_tuning(constructor, x_device, y_device, repeats):
    base = constructor(
        include_top=False, weights=None, pooling="avg", input_shape=x_device.shape[1:]
    )
    model = keras.Sequential([base, keras.layers.Dense(1000, dtype="float32")])
    model.compile(
        keras.optimizers.Adam(1e-4), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    return rate(lambda: model.train_on_batch(x_device, y_device), len(x_device), repeats)


def kt_extraction(constructor, x_host, batch, repeats):
    features = ktr.transfer(constructor, None, weights=None, input_shape=x_host.shape[1:])

    def run():
        return ktr.extract_features(features, x_host, batch_size=batch, progress=False).x

    return rate(run, len(x_host), repeats)


def kt_fine_tuning(constructor, x_host, y_host, batch):
    model = ktr.transfer(
        constructor, 1000, strategy="fine_tune", weights=None, input_shape=x_host.shape[1:]
    )
    model.compile(
        keras.optimizers.Adam(1e-4), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    model.fit(x_host[:batch], y_host[:batch], batch_size=batch, verbose=0)  # compile
    start = time.perf_counter()
    model.fit(x_host, y_host, batch_size=batch, epochs=1, verbose=0, shuffle=False)
    return len(x_host) / (time.perf_counter() - start)


def torch_fine_tuning(name, size, batch, steps):
    try:
        import torch
        import torchvision
    except ImportError as error:
        return None, f"skipped: {error}"
    if not torch.cuda.is_available():
        return None, "skipped: no CUDA device for torch"
    model = getattr(torchvision.models, TORCHVISION[name])(num_classes=1000).cuda()
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), 1e-4)
    x = torch.randn(batch, 3, size, size, device="cuda").to(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device="cuda")

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - start), "torchvision, bf16 autocast, eager"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20, help="batches per timed run")
    parser.add_argument("--models", default="ResNet50,MobileNetV2")
    parser.add_argument("--out", default=None, help="JSON lines file")
    parser.add_argument("--tiny", action="store_true", help="32 px, batch 4, 2 steps: a CPU check")
    args = parser.parse_args()
    if args.tiny:
        args.image_size, args.batch_size, args.steps = 32, 4, 2
    import jax

    device = jax.devices()[0]
    name = getattr(device, "device_kind", device.platform)
    policy = ktr.precision.resolve("auto")
    # The plain-Keras baselines run as a plain-Keras user would: the global policy.
    keras.mixed_precision.set_global_policy(policy)
    peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
    size, batch = args.image_size, args.batch_size
    rng = np.random.default_rng(0)
    x_host = rng.integers(0, 256, (batch * args.steps, size, size, 3)).astype("uint8")
    y_host = rng.integers(0, 1000, len(x_host))
    x_device = jax.device_put(x_host[:batch].astype("float32"))
    y_device = jax.device_put(y_host[:batch])
    records = []

    def emit(**record):
        record = {"device": name, "policy": policy, "image_size": size, "batch": batch, **record}
        records.append(record)
        print(json.dumps(record), flush=True)

    for model_name in args.models.split(","):
        constructor = getattr(keras.applications, model_name)
        reference = plain_extraction(constructor, x_device, args.steps)
        ours = kt_extraction(constructor, x_host, batch, 1)
        emit(
            model=model_name,
            task="extraction",
            plain_keras_device_resident=reference,
            kt_extract_features_host_uint8=ours,
            ratio=ours / reference,
            goal=0.90,
        )
        plain = plain_fine_tuning(constructor, x_device, y_device, args.steps)
        fit = kt_fine_tuning(constructor, x_host, y_host, batch)
        torch_rate, torch_note = torch_fine_tuning(model_name, size, batch, args.steps)
        record = dict(
            model=model_name,
            task="fine_tuning",
            plain_keras_train_on_batch=plain,
            kt_transfer_fit_host_uint8=fit,
            ratio_vs_plain_keras=fit / plain,
            pytorch_eager=torch_rate,
            pytorch_note=torch_note,
        )
        if torch_rate:
            record.update(ratio_vs_pytorch_eager=fit / torch_rate, goal=1.0)
        if peak and model_name in FLOP_PER_IMAGE:
            record.update(share_of_peak_bf16=fit * FLOP_PER_IMAGE[model_name] / peak)
        emit(**record)
    if args.out:
        with open(args.out, "w") as handle:
            handle.writelines(json.dumps(r) + "\n" for r in records)


if __name__ == "__main__":
    main()
