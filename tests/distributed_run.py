"""One small transfer run on several devices, for tests/test_multi_worker.py.

Devices must be set up before the backend starts, so each mode runs in a
fresh process:

    python tests/distributed_run.py mirrored OUT_DIR       # TF, 2 logical CPUs
    python tests/distributed_run.py data_parallel OUT_DIR  # JAX, 2 host devices
    python tests/distributed_run.py worker OUT_DIR         # TF, TF_CONFIG set

The run is a user's: `transfer()` with a frozen backbone, then
`GradualUnfreezing` with per-block learning rates (`lr_factor`) and the
`"train_affine"` BatchNorm policy, through `model.fit`. `mirrored` and
`data_parallel` also run it on one device and write both weight sets;
`worker` writes its own.
"""

import json
import os
import sys

MODE, OUT = sys.argv[1], sys.argv[2]
if MODE == "data_parallel":
    os.environ["KERAS_BACKEND"] = "jax"
    # First: XLA stops reading flags at a malformed one.
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2 " + os.environ.get(
        "XLA_FLAGS", ""
    )
else:
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import tensorflow as tf

    if MODE == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2
        )

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_transfer as kt  # noqa: E402


def backbone():
    inputs = keras.Input((16, 16, 3))
    x = inputs
    for index, width in enumerate((4, 8)):
        x = keras.layers.Conv2D(width, 3, strides=2, padding="same", name=f"conv{index}")(x)
        x = keras.layers.BatchNormalization(name=f"bn{index}")(x)
        x = keras.layers.ReLU(name=f"relu{index}")(x)
    return keras.Model(inputs, x, name="tiny")


def train():
    """Weights before and after: {path: array}, twice."""
    keras.utils.set_random_seed(0)
    model = kt.transfer(backbone(), 3, dropout=0.0, preprocessing="tf")
    model.compile(
        keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    before = weights(model)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (32, 16, 16, 3)).astype("uint8"), np.arange(32) % 3
    unfreezing = kt.callbacks.GradualUnfreezing(
        start_epoch=1, lr_factor=0.5, bn="train_affine", verbose=0
    )
    model.fit(x, y, batch_size=8, epochs=3, shuffle=False, callbacks=[unfreezing], verbose=0)
    return before, weights(model)


def weights(model):
    return {w.path.replace("/", "."): keras.ops.convert_to_numpy(w) for w in model.weights}


def save(name, arrays):
    np.savez(os.path.join(OUT, name), **arrays)


if MODE == "mirrored":
    before, one = train()
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        _, two = train()
    replicas = strategy.num_replicas_in_sync
elif MODE == "data_parallel":
    import jax

    before, one = train()
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices()))
    _, two = train()
    replicas = len(jax.devices())
else:
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    with strategy.scope():
        before, two = train()
    one, replicas = None, strategy.num_replicas_in_sync
index = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {}).get("index", 0)
save(f"before_{index}.npz", before)
save(f"{MODE}_{index}.npz", two)
if one is not None:
    save("one_device.npz", one)
print(json.dumps({"replicas": replicas}))
