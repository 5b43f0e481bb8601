"""Shared test set-up. Each pytest process runs under one KERAS_BACKEND."""

import gc
import os
import pathlib

import keras
import numpy as np
import pytest

BACKEND = keras.backend.backend()
ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
HYMENOPTERA = SHARED / "data" / "hymenoptera_data"
WEIGHTS = SHARED / "weights"
MOBILENET_V1_025 = WEIGHTS / "mobilenet_2_5_224_tf_no_top.h5"
MOBILENET_V2_035_EXPORT = WEIGHTS / "mobilenet_v2_0.35_224_teachable_machine_export.h5"


def pytest_report_header(config):
    return f"KERAS_BACKEND={BACKEND}, keras {keras.__version__}"


# Real-photo tests run 224 px MobileNets over the shared photos. They run once,
# in the torch process: the TensorFlow process enumerates every
# keras.applications model, and XLA's CPU depthwise convolutions make them
# take minutes under JAX. Every backend runs the tiny-model tests.
REAL_PHOTOS = pytest.mark.skipif(
    BACKEND != "torch",
    reason="real-photo tests (224 px MobileNets) run once, in the torch process, "
    "to keep the three-backend CI under 15 minutes",
)


def runs_once_in(backend):
    """For backend-independent examples that train: run in one process only."""
    return pytest.mark.skipif(
        BACKEND != backend,
        reason=f"backend-independent example: runs once, in the {backend} process, "
        "to keep the three-backend CI under 15 minutes",
    )


def pytest_collection_modifyitems(config, items):
    skip_tf = pytest.mark.skip(
        reason=f"needs the TensorFlow backend (TF-Hub / tf.distribute); "
        f"this process runs KERAS_BACKEND={BACKEND}"
    )
    skip_shared = pytest.mark.skip(
        reason=f"../shared is absent ({SHARED}): real photos and weights are not on this machine"
    )
    # keras_hub loads TensorFlow (tensorflow-text), and so do the exporter's
    # converters (jax2tf, LiteRT): their tests run last, so the JAX and torch
    # processes hold TensorFlow only for them, and import it once.
    # The fit's tests read the shared run before the other sub-commands'
    # tests add to it (evaluate writes RUN_DIR/evaluation).
    items.sort(
        key=lambda item: (
            item.nodeid.startswith(
                ("tests/backbones/test_keras_hub_adapter.py", "tests/deploy/test_exporter.py")
            ),
            item.nodeid.startswith("tests/commands/") and "test_fit.py" not in item.nodeid,
        )
    )
    for item in items:
        if "tensorflow_only" in item.keywords and BACKEND != "tensorflow":
            item.add_marker(skip_tf)
        if "shared_data" in item.keywords and not SHARED.is_dir():
            item.add_marker(skip_shared)


def pytest_collection_finish(session):
    # What the imports made (Keras, the backend, the test modules) lives to
    # the end: frozen, a full collection no longer traces it (0.2-0.4 s
    # each, some 20 times a process).
    gc.freeze()


_KERAS_HUB_STARTED = []


def pytest_runtest_setup(item):
    # The KerasHub tests run last. What the suite before them left to the
    # collector is frozen once, not traced again: one full collection of it
    # took the TensorFlow process 49 s, inside a KerasHub test.
    if (
        item.nodeid.startswith("tests/backbones/test_keras_hub_adapter.py")
        and not _KERAS_HUB_STARTED
    ):
        _KERAS_HUB_STARTED.append(item.nodeid)
        gc.freeze()


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Every test starts with float32 and a cleared session."""
    keras.config.set_dtype_policy("float32")
    # Without Keras's gc.collect(): a full collection of a heap that holds
    # TensorFlow took about a second per test, 40% of the suite's time.
    keras.utils.clear_session(free_memory=False)
    yield
    keras.config.set_dtype_policy("float32")


def gradient(fn, x):
    """d sum(fn(x)) / dx as numpy, on whichever backend runs: the library's
    own (Grad-CAM's) backend-specific step."""
    from keras_transfer.deploy.inspection import _gradient

    return _gradient(fn, x)


def load_example(name):
    """An example script as a module, to run its `main` in this process."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        f"example_{name}", ROOT / "examples" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HUB_L2 = 0.1


@pytest.fixture(scope="session")
def reusable(tmp_path_factory):
    """A TF2 reusable SavedModel with BatchNorm and an L2 kernel regularizer
    (HUB_L2), exported from tf_keras with tf.saved_model.save, TF-Hub's recipe."""
    if BACKEND != "tensorflow":
        pytest.skip("TF-Hub SavedModels need the TensorFlow backend")
    import tensorflow as tf

    tf_keras = pytest.importorskip("tf_keras", reason="tf_keras builds the Hub-style model")
    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential(
        [
            tf_keras.layers.Conv2D(
                4,
                3,
                kernel_regularizer=tf_keras.regularizers.l2(HUB_L2),
                input_shape=(None, None, 3),
            ),
            tf_keras.layers.BatchNormalization(),
            tf_keras.layers.ReLU(),
            tf_keras.layers.GlobalAveragePooling2D(),
        ]
    )
    path = tmp_path_factory.mktemp("hub") / "reusable"
    tf.saved_model.save(model, str(path))
    return path


@pytest.fixture(scope="session")
def hub_mobilenet_v2(tmp_path_factory):
    """The ImageNet MobileNetV2-0.35, exported as a TF-Hub SavedModel by the
    example's own code (once per session): (directory, the Keras model)."""
    if BACKEND != "tensorflow":
        pytest.skip("TF-Hub SavedModels need the TensorFlow backend")
    if not MOBILENET_V2_035_EXPORT.is_file():
        pytest.skip(f"../shared is absent ({SHARED}): the MobileNetV2 weights are not here")
    path = tmp_path_factory.mktemp("hub") / "mobilenet_v2_035"
    return path, load_example("tfhub_finetune").export_hub_mobilenet(path)


def subprocess_env(backend):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def tiny_backbone(top=True, dropout=None, name="tiny", widths=(8, 16, 16)):
    """A three-block conv net with BatchNorm (and a classifier top), 32 px."""
    inputs = keras.Input((32, 32, 3))
    x = inputs
    for index, width in enumerate(widths):
        x = keras.layers.Conv2D(
            width, 3, strides=2 if index < 2 else 1, padding="same", name=f"conv{index}"
        )(x)
        x = keras.layers.BatchNormalization(name=f"bn{index}")(x)
        x = keras.layers.ReLU(name=f"relu{index}")(x)
        if dropout and index == 1:
            x = keras.layers.Dropout(dropout, name="inner_dropout")(x)
    if top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dense(10, name="predictions")(x)
    return keras.Model(inputs, x, name=name)


def pixels(n=4, size=32, channels=3, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, channels)).astype("float32")


def as_numpy(x):
    return keras.ops.convert_to_numpy(x)


# The command-line tests' photos and one fixed-recipe run on them, made once
# a process for every sub-command's tests.
@pytest.fixture(scope="session")
def photos(tmp_path_factory):
    from tests.command_line import _folder  # it imports this module

    root = tmp_path_factory.mktemp("photos")
    _folder(root / "train")
    _folder(root / "val", per_class=4)
    (root / "train" / "red" / "notes.txt").write_text("not an image")
    return root


@pytest.fixture(scope="session")
def run(photos, tmp_path_factory):
    from tests.command_line import FIT, FIXED, command

    out = tmp_path_factory.mktemp("runs") / "colors"
    result = command(
        "fit",
        photos,
        *FIT,
        *FIXED,
        "--epochs",
        "12",
        "--lr",
        "0.03",
        "--out",
        out,
        entry_point=True,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return out, result
