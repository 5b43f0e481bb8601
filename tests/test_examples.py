"""Each example runs end to end, offline, on small settings."""

import subprocess
import sys

import pytest

from tests.conftest import BACKEND, ROOT, SLOW_ON_JAX, subprocess_env


def run_example(name, *args, timeout=300):
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *args],
        env=subprocess_env(BACKEND), capture_output=True, text=True, timeout=timeout,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


@SLOW_ON_JAX
@pytest.mark.shared_data
def test_quickstart_trains_on_real_photos():
    out = run_example("quickstart.py", "--epochs", "2", "--image-size", "96")
    accuracy = float(out.split("validation accuracy ")[1].split()[0])
    assert accuracy > 0.6, out  # ImageNet features beat chance (0.54) on ants/bees
