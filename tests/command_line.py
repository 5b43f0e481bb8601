"""What the command-line tests share: folders of coloured photos, the
command run for real, and a bad input's exit code 2."""

import pathlib
import subprocess
import sys

import numpy as np
from PIL import Image

from keras_transfer.commands import cli
from tests.conftest import BACKEND, ROOT, subprocess_env

COLORS = {"blue": (30, 30, 200), "green": (30, 200, 30), "red": (200, 30, 30)}


# VGG16 keeps colour apart even with random weights (the MobileNets' random
# features vanish), and it builds in a second at 32 px.
FIT = ["--backbone", "vgg16", "--weights", "none", "--image-size", "32", "--batch-size", "8"]


FIXED = ["--strategy", "feature_extraction"]  # --epochs and --lr set a fixed recipe


def _folder(root, per_class=8, classes=COLORS):
    rng = np.random.default_rng(0)
    for name, color in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(np.array(color) + rng.normal(0, 25, (36, 44, 3)), 0, 255)
            Image.fromarray(pixels.astype("uint8")).save(root / name / f"{i}.png")
    return root


def command(*args, entry_point=False):
    exe = (
        [str(pathlib.Path(sys.executable).parent / "keras-transfer")]
        if entry_point
        else [sys.executable, "-m", "keras_transfer"]
    )
    return subprocess.run(
        [*exe, *map(str, args)],
        env=subprocess_env(BACKEND),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


def _bad(capsys, *argv):
    assert cli.main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err
