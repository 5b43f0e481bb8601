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
from PIL import Image

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


def _numbered_folder(root, count=11):
    """Photos whose pixels are their file's number, in two classes; an odd
    count, so one part repeats its own first file."""
    for number in range(count):
        (root / "ab"[number % 2]).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (12, 10), (number,) * 3).save(root / "ab"[number % 2] / f"{number}.png")
    return root


def _check_split(streamed, count=11):
    """Each part from its own worker's index, disjoint, covering the folder,
    and all of it fed to the worker's model, not half of each batch."""
    assert [s["shard"] for s in streamed] == [[0, 2], [1, 2]]
    parts = [set(s["files"]) for s in streamed]
    assert not parts[0] & parts[1] and parts[0] | parts[1] == set(range(count))
    for part in streamed:
        assert len(part["files"]) == 6 and set(part["fed"]) == set(part["files"])
        assert len(part["fed"]) == 8  # two whole batches of 4


def _communicate(processes):
    """Each process's last output line, parsed; none outlives the test (a
    worker waiting for a dead peer would)."""
    try:
        outputs = [process.communicate(timeout=240) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    for process, (_, err) in zip(processes, outputs):
        assert process.returncode == 0, err[-3000:]
    return [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]


@pytest.mark.skipif(BACKEND != "jax", reason="jax.distributed: runs in the JAX process")
def test_two_jax_processes_each_read_their_part_and_join_whole_batches(tmp_path):
    folder, port = _numbered_folder(tmp_path / "photos"), _free_port()
    env = dict(subprocess_env("jax"), XLA_FLAGS="", JAX_PLATFORMS="cpu")
    processes = [
        subprocess.Popen(
            [sys.executable, str(SCRIPT), "process", str(tmp_path), str(folder), str(i), str(port)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    streamed = _communicate(processes)
    _check_split(streamed)
    # Every step joined one whole batch of each process: the kernel moved by
    # exactly the mean of their means.
    expected = -(streamed[0]["sum_of_means"] + streamed[1]["sum_of_means"]) / 2
    for part in streamed:
        np.testing.assert_allclose(part["kernel"], [expected] * 3, rtol=1e-5)


# Its workers run TensorFlow whatever this process runs; the torch process
# has the most room in CI.
@pytest.mark.skipif(
    BACKEND != "torch", reason="two TF worker processes: run once, from the torch process"
)
def test_multi_worker_mirrored_strategy_two_workers_end_identical_and_split_a_folder(tmp_path):
    pytest.importorskip("tensorflow", reason="MultiWorkerMirroredStrategy needs TensorFlow")
    folder = _numbered_folder(tmp_path / "photos")
    cluster = {"worker": [f"127.0.0.1:{_free_port()}" for _ in range(2)]}
    workers = []
    for index in range(2):
        env = dict(
            subprocess_env("tensorflow"),
            TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
        )
        workers.append(
            subprocess.Popen(
                [sys.executable, str(SCRIPT), "worker", str(tmp_path), str(folder)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    streamed = _communicate(workers)
    assert [s["replicas"] for s in streamed] == [2, 2]
    _check_split([s["streamed"] for s in streamed])
    first, second = (dict(np.load(tmp_path / f"worker_{i}.npz")) for i in range(2))
    before = dict(np.load(tmp_path / "before_0.npz"))
    for path in first:
        np.testing.assert_array_equal(first[path], second[path], err_msg=path)
    for path in ("conv0.kernel", "conv1.kernel", "head.classifier.kernel"):
        assert not np.allclose(first[path], before[path]), path
    for path in ("bn0.moving_mean", "bn1.moving_variance"):
        np.testing.assert_array_equal(first[path], before[path])
