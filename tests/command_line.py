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


def scored_colour_model(path):
    """Saves at `path` a model scoring mean colours (8 px, the classes of
    `COLORS`, a softmax) with an unknown score fitted on noisy red, green
    and blue images; returns the scored model before the softmax."""
    import keras

    import keras_transfer as ktr

    rng = np.random.default_rng(0)
    colors = np.array(list(COLORS.values()), "float32")

    def images(n):
        labels = np.arange(n) % 3
        noise = rng.normal(0, 25, (n, 8, 8, 3))
        return np.clip(colors[labels][:, None, None] + noise, 0, 255).astype("float32"), labels

    inputs = keras.Input((8, 8, 3))
    head = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3)], name="head")
    head.layers[-1].set_weights([colors.T / 50.0, np.zeros(3, "float32")])
    model = keras.Model(inputs, head(keras.layers.GlobalAveragePooling2D()(inputs)))
    (train, train_labels), (held, held_labels) = images(60), images(40)
    scored = ktr.fit_unknown(model, train, held, train_labels, held_labels)
    probabilities = keras.layers.Softmax(name="probabilities")(scored.output)
    keras.Model(scored.input, probabilities).save(path)
    return scored


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
