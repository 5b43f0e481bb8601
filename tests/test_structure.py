"""The package's structure: a lazy import that changes nothing in Keras,
Keras internals behind `_compat`, a declared public API, and no global
state changed by the library. Import checks run in fresh processes, as an
import can only be watched from outside; the source checks read files, and
run once."""

import ast
import subprocess
import sys

import keras
import pytest

import keras_transfer
from tests.conftest import BACKEND, ROOT, runs_once_in, subprocess_env

PACKAGE = ROOT / "keras_transfer"
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__main__.py")


def _python(code, backend=BACKEND):
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=subprocess_env(backend),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@runs_once_in("jax")
def test_import_and_help_load_no_backend():
    out = _python(
        "import sys, keras_transfer, keras_transfer.commands.cli as cli\n"
        "print(sorted(m for m in ('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules))\n"
        # `export` chooses, before Keras loads, a backend that exports the
        # format: a run trained under JAX exports to LiteRT under TensorFlow.
        "import os; cli._export_backend('litert')\n"
        "print(os.environ['KERAS_BACKEND'])"
    )
    assert out.split() == ["[]", "tensorflow"]
    help_text = subprocess.run(
        [sys.executable, "-m", "keras_transfer", "--help"],
        env=subprocess_env(BACKEND),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert help_text.returncode == 0 and "usage: keras-transfer" in help_text.stdout
    assert help_text.stderr == ""


@pytest.mark.tensorflow_only
def test_import_changes_nothing_in_keras_and_survives_a_missing_internal():
    out = _python(
        "import sys, keras\n"
        "from keras.src.backend.tensorflow import trainer\n"
        "del trainer.reduce_per_replica  # as if a Keras release had renamed it\n"
        "before = (keras.config.dtype_policy().name,\n"
        "          trainer.TensorFlowTrainer._maybe_symbolic_build)\n"
        "import keras_transfer as ktr\n"
        "ktr.transfer, ktr.extract_features, ktr.fine_tune, ktr.heads.fit_head\n"
        "model = ktr.transfer(keras.Sequential([keras.Input((8, 8, 3)),\n"
        "    keras.layers.Conv2D(2, 3)]), 2, preprocessing='unit')\n"
        "after = (keras.config.dtype_policy().name,\n"
        "         trainer.TensorFlowTrainer._maybe_symbolic_build)\n"
        "print(before == after, model.output.shape[-1], ktr.multi_worker.patch())\n"
        "ktr.transfer('mobilenet', 2, weights=None, input_shape=(32, 32, 3),\n"
        "    backbone_kwargs={'alpha': 0.25})\n"
        "print('keras_hub' in sys.modules)\n"
    )
    # Nothing changed; the model builds; the patch declines, as its target is
    # gone; resolving a name did not import keras_hub (it loads TensorFlow even
    # under JAX and torch).
    assert out.split() == ["True", "2", "False", "False"]


def test_transfer_sets_the_policy_per_layer_not_globally():
    model = keras_transfer.transfer(
        "mobilenet", 2, weights=None, input_shape=(32, 32, 3), mixed_precision="mixed_bfloat16"
    )
    assert keras.config.dtype_policy().name == "float32"
    assert model.get_layer("backbone").get_layer("conv1").compute_dtype == "bfloat16"
    assert model.get_layer("head").get_layer("classifier").compute_dtype == "float32"


def test_blockwise_lr_leaves_the_callers_optimizer_alone():
    adam = keras.optimizers.Adam(1e-3)
    optimizer = keras_transfer.optimizers.BlockwiseLR(adam, {"w": 0.5})
    optimizer.build([keras.Variable([1.0, 2.0], name="w")])
    assert optimizer.inner_optimizer is not adam
    assert "_backend_update_step" not in vars(adam) and not adam.built
    built = keras.optimizers.SGD()
    built.build([keras.Variable([1.0])])
    with pytest.raises(ValueError, match="must not be built yet"):
        keras_transfer.optimizers.BlockwiseLR(built)


def _keras_internals(tree):
    """`keras.src` imports, and `._private` attributes of objects that are
    not the module's own (`self`, `cls`, or one of our modules)."""
    ours = {"self", "cls", "_compat", "_io", "_options"}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("keras.src"):
            found.append(f"line {node.lineno}: from {node.module}")
        elif isinstance(node, ast.Import) and any(
            a.name.startswith("keras.src") for a in node.names
        ):
            found.append(f"line {node.lineno}: import keras.src")
        elif isinstance(node, ast.Constant) and str(node.value).startswith("keras.src"):
            found.append(f"line {node.lineno}: {node.value!r}")
        elif (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and not (isinstance(node.value, ast.Name) and node.value.id in ours)
        ):
            found.append(f"line {node.lineno}: ._{node.attr[1:]}")
    return found


# BlockwiseLR's own state, read on the optimizers it builds, and the
# multi-worker flag: ours, not Keras's.
_OWN_PRIVATE = {"._deferred_state"}


@runs_once_in("jax")
def test_keras_internals_are_used_only_in_compat():
    offenders = {}
    for path in MODULES:
        if path.name == "_compat.py":
            continue
        found = [
            f
            for f in _keras_internals(ast.parse(path.read_text()))
            if f.split(": ", 1)[1] not in _OWN_PRIVATE
        ]
        if found:
            offenders[str(path.relative_to(ROOT))] = found
    assert offenders == {}


@runs_once_in("jax")
@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_every_module_declares_its_public_names(path):
    tree = ast.parse(path.read_text())
    declared, defined = None, []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            defined.append(node.name)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id == "__all__":
                    declared = node.value
                elif isinstance(target, ast.Name):
                    defined.append(target.id)
    if path.name == "__init__.py" and path.parent == PACKAGE:
        assert set(keras_transfer.__all__) <= set(dir(keras_transfer))
        return
    assert declared is not None, f"{path.name} has no __all__"
    names = ast.literal_eval(declared) if not isinstance(declared, ast.Call) else None
    public = {n for n in defined if not n.startswith("_")}
    if path.name == "__init__.py":
        public = set(names)  # a package's public names are what it re-exports
    assert public <= set(names), f"public but not in __all__: {sorted(public - set(names))}"


@pytest.mark.tensorflow_only
def test_the_command_line_starts_without_backend_log_lines():
    """TensorFlow's absl lines ("All log messages before absl::InitializeLog()",
    the CUDA probe) are printed before logging is set up: hidden unless --debug."""
    command = [sys.executable, "-m", "keras_transfer", "backbones", "--json"]
    env = subprocess_env("tensorflow")
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    quiet = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert quiet.returncode == 0 and quiet.stdout.startswith("[")
    assert quiet.stderr == ""


# A module stays readable at one sitting.
MAX_MODULE_LINES = 550


@runs_once_in("jax")
def test_no_module_of_code_is_longer_than_the_cap():
    long = {
        str(path.relative_to(PACKAGE)): lines
        for path in MODULES
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}, f"split these by job (at most {MAX_MODULE_LINES} lines): {long}"


@runs_once_in("jax")
def test_every_module_has_its_test_file():
    """`keras_transfer/a.py` is tested in `tests/test_a.py`, and
    `keras_transfer/package/b.py` in `tests/package/test_b.py`."""
    missing = []
    for path in MODULES:
        if path.name == "__init__.py":
            continue
        relative = path.relative_to(PACKAGE)
        test = ROOT / "tests" / relative.parent / f"test_{relative.name}"
        if not test.is_file():
            missing.append(str(test.relative_to(ROOT)))
    assert missing == []


def _readme_layers():
    """The layers of the README's "How the package is layered" block: each
    line's modules, before the two spaces that start its description."""
    text = (ROOT / "README.md").read_text()
    block = text.split("### How the package is layered", 1)[1].split("```", 2)[1]
    return [set(line.split("  ", 1)[0].strip().split(" | ")) for line in block.strip().splitlines()]


@runs_once_in("jax")
def test_the_readme_layer_block_is_the_import_contract():
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads pyproject.toml")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (contract,) = config["tool"]["importlinter"]["contracts"]
    assert _readme_layers() == [set(layer.split(" | ")) for layer in contract["layers"]]


@runs_once_in("jax")
def test_the_commands_package_names_every_sub_command():
    from keras_transfer import commands
    from keras_transfer.commands import cli

    named = {name for name in commands.__doc__.split("(", 1)[1].split(")", 1)[0].split("`")}
    assert set(cli._COMMANDS) <= named, set(cli._COMMANDS) - named
