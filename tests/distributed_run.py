"""One small transfer run on several devices, for tests/utils/test_multi_worker.py.

Devices must be set up before the backend starts, so each mode runs in a
fresh process:

    python tests/distributed_run.py mirrored OUT_DIR       # TF, 2 logical CPUs
    python tests/distributed_run.py data_parallel OUT_DIR  # JAX, 2 host devices
    python tests/distributed_run.py worker OUT_DIR [FOLDER]  # TF, TF_CONFIG set
    python tests/distributed_run.py process OUT_DIR FOLDER INDEX PORT  # JAX, 2 processes

The run is a user's: `transfer()` with a frozen backbone, then
`GradualUnfreezing` with per-block learning rates (`lr_factor`) and the
`"train_affine"` BatchNorm policy, through `model.fit`. `mirrored` and
`data_parallel` also run it on one device and write both weight sets;
`worker` writes its own, then, given a FOLDER of photos whose pixels are
their file's number, trains one epoch on a `ktr.ImageStream` of it and
prints the files its part holds and the images its model was fed.
`process` is one of two JAX processes (`jax.distributed` on 127.0.0.1,
`DataParallel`) that train one epoch on their parts of FOLDER.
"""

import json
import os
import sys

MODE, OUT = sys.argv[1], sys.argv[2]
if MODE == "process":
    os.environ["KERAS_BACKEND"] = "jax"
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{sys.argv[5]}", num_processes=2, process_id=int(sys.argv[4])
    )
elif MODE == "data_parallel":
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


def stream_epoch(folder):
    """One epoch on this worker's part of `folder`: its files' numbers, and
    the numbers of the images its model was fed (read by a layer)."""
    stream = kt.ImageStream(folder, (8, 8), batch_size=4, shuffle=True, seed=0)
    fed = []

    class Record(keras.layers.Layer):
        def call(self, x):
            tf.py_function(lambda v: fed.extend(v.numpy()[:, 0, 0, 0].tolist()) or 0, [x], tf.int32)
            return x

    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(Record()(inputs)))
    model = keras.Model(inputs, outputs)
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(stream, epochs=1, verbose=0)
    return {"shard": stream.shard, "files": [int(p.stem) for p in stream.paths], "fed": fed}


def process_epoch(folder):
    """One epoch of a model whose kernel moves by minus the mean pixel of
    each global batch (zero kernel, loss = mean output, SGD at 1): it ends
    at minus half the sum of both processes' own batch means if each step
    joins one whole batch of each."""
    dist = keras.distribution.DataParallel()
    dist.auto_shard_dataset = False  # each process reads its own part
    keras.distribution.set_distribution(dist)
    # Unshuffled: Keras feeds the first epoch a batch it decoded before it
    # started the epoch, so only a fixed order makes every epoch the same.
    stream = kt.ImageStream(folder, (8, 8), batch_size=4)
    inputs = keras.Input((8, 8, 3))
    kernel = keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")
    model = keras.Model(inputs, kernel(keras.layers.GlobalAveragePooling2D()(inputs)))
    model.compile(keras.optimizers.SGD(1.0), lambda y, p: p[:, 0])
    model.fit(stream, epochs=1, shuffle=False, verbose=0)
    batches = [stream[i][0][:, 0, 0, 0].tolist() for i in range(len(stream))]
    return {
        "shard": stream.shard,
        "files": [int(p.stem) for p in stream.paths],
        "fed": [v for values in batches for v in values],
        "sum_of_means": float(np.sum([np.mean(values) for values in batches])),
        "kernel": keras.ops.convert_to_numpy(kernel.kernel).ravel().tolist(),
    }


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
elif MODE == "process":
    print(json.dumps(process_epoch(sys.argv[3])))
    sys.exit()
else:
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    with strategy.scope():
        before, two = train()
        streamed = stream_epoch(sys.argv[3]) if len(sys.argv) > 3 else None
    one, replicas = None, strategy.num_replicas_in_sync
index = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {}).get("index", 0)
save(f"before_{index}.npz", before)
save(f"{MODE}_{index}.npz", two)
if one is not None:
    save("one_device.npz", one)
print(json.dumps({"replicas": replicas, "streamed": None if MODE != "worker" else streamed}))
