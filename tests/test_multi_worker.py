"""Data-parallel training through Keras's and TensorFlow's own engines.

Each run is a fresh process (tests/distributed_run.py): devices are set up
before the backend starts. The runs train a `transfer()` model with gradual
unfreezing, per-block learning rates and the "train_affine" BatchNorm
policy, and must end where one device ends.
"""

import json
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import BACKEND, ROOT, subprocess_env

SCRIPT = ROOT / "tests" / "distributed_run.py"


def _run(mode, out, env=None, timeout=240):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), mode, str(out)],
        env=env or subprocess_env(BACKEND),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _two_device_faults(mode, out):
    """Runs `mode`; lists where it strays from the one-device run."""
    replicas = _run(mode, out)["replicas"]
    before, one, many = (
        dict(np.load(out / name)) for name in ("before_0.npz", "one_device.npz", f"{mode}_0.npz")
    )
    faults = [] if replicas == 2 else [f"{replicas} replicas"]
    faults += [
        f"{path} differs from one device"
        for path in one
        if path not in many or not np.allclose(many[path], one[path], rtol=1e-5, atol=1e-6)
    ]
    # Gradual unfreezing reached the stem block, and the policy kept the
    # BatchNorm statistics frozen while gamma and beta trained.
    faults += [
        f"{path} did not train"
        for path in ("conv0.kernel", "bn0.gamma", "conv1.kernel", "head.classifier.kernel")
        if np.allclose(many[path], before[path])
    ]
    faults += [
        f"{path} moved"
        for path in ("bn0.moving_mean", "bn1.moving_variance")
        if not np.array_equal(many[path], before[path])
    ]
    return faults


@pytest.mark.skipif(BACKEND != "tensorflow", reason="tf.distribute: runs in the TF process")
def test_mirrored_strategy_on_two_logical_cpus_matches_one_device(tmp_path):
    assert _two_device_faults("mirrored", tmp_path) == []


@pytest.mark.skipif(BACKEND != "jax", reason="keras.distribution on JAX: runs in the JAX process")
def test_jax_data_parallel_on_two_host_devices_matches_one_device(tmp_path):
    assert _two_device_faults("data_parallel", tmp_path) == []


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Its workers run TensorFlow whatever this process runs; the torch process
# has the most room in CI.
@pytest.mark.skipif(
    BACKEND != "torch", reason="two TF worker processes: run once, from the torch process"
)
def test_multi_worker_mirrored_strategy_two_workers_end_identical(tmp_path):
    pytest.importorskip("tensorflow", reason="MultiWorkerMirroredStrategy needs TensorFlow")
    cluster = {"worker": [f"127.0.0.1:{_free_port()}" for _ in range(2)]}
    workers = []
    for index in range(2):
        env = dict(
            subprocess_env("tensorflow"),
            TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
        )
        workers.append(
            subprocess.Popen(
                [sys.executable, str(SCRIPT), "worker", str(tmp_path)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    try:
        outputs = [worker.communicate(timeout=240) for worker in workers]
    finally:  # a worker waiting for a dead peer must not outlive the test
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    for worker, (out, err) in zip(workers, outputs):
        assert worker.returncode == 0, err[-3000:]
        assert json.loads(out.strip().splitlines()[-1])["replicas"] == 2
    first, second = (dict(np.load(tmp_path / f"worker_{i}.npz")) for i in range(2))
    before = dict(np.load(tmp_path / "before_0.npz"))
    for path in first:
        np.testing.assert_array_equal(first[path], second[path], err_msg=path)
    for path in ("conv0.kernel", "conv1.kernel", "head.classifier.kernel"):
        assert not np.allclose(first[path], before[path]), path
    for path in ("bn0.moving_mean", "bn1.moving_variance"):
        np.testing.assert_array_equal(first[path], before[path])
