"""What a user wrote before the folders still runs: the public names of
`ktr.__all__`, the module paths of 0.1.0.dev0 (aliases of the modules at
their new paths), and what the modules that became folders held. The
folders are the map: few entries at the top, each folder's `__init__`
naming its modules."""

import ast
import importlib
import subprocess
import sys
import warnings

import pytest

import keras_transfer
from tests.conftest import ROOT, runs_once_in, subprocess_env

# `ktr.__all__` before the folders (later issues may add names, not remove).
PUBLIC = """
BackboneModel Features ImageFolder ImageStream LRFinderResult TransferReport
attach_head augmentation backbones callbacks classifier_head demo export exporter
extract_features factory features fine_tune freeze freezing gradual
gradual_unfreeze guards heads hub image_decoding image_folder image_stream
inspection labels layers load_legacy_h5 load_weights_npz lr_find lr_finder
multi_worker optimizers penalties precision rank ranking rate_multipliers
recipes register regularizers report save_weights_npz schedules steps
strategies trainable_summary transfer transfer_weights transferability unfreeze
weights
""".split()
# What the three modules that are folders now declared.
FOLDED = {
    "heads": ["COPY_BYTES", "LogisticHead", "SVMHead", "attach_head", "fit_head"],
    "recipes": ["SCHEDULES", "fine_tune"],
    "backbones": [
        "FAMILIES",
        "KERAS_HUB_FAMILIES",
        "Family",
        "KerasHubFamily",
        "Variant",
        "constructor",
        "constructor_names",
        "family_of_constructor",
        "family_of_model",
        "keras_hub_family",
        "keras_hub_table",
        "markdown_table",
        "resolve_name",
        "split_blocks",
        "table",
    ],
}
PACKAGE = ROOT / "keras_transfer"
FOLDERS = sorted(p for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())


def test_every_public_name_of_before_is_still_public():
    assert set(PUBLIC) <= set(keras_transfer.__all__)
    for name in PUBLIC:
        assert getattr(keras_transfer, name) is not None, name


@pytest.mark.parametrize("old, new", sorted(keras_transfer._MOVED.items()))
def test_an_old_module_path_is_the_module_at_its_new_path(old, new):
    module = importlib.import_module(f"keras_transfer.{new}")
    assert importlib.import_module(f"keras_transfer.{old}") is module
    assert getattr(keras_transfer, old) is module
    for name in module.__all__:
        assert getattr(module, name) is not None


@pytest.mark.parametrize("folder", sorted(FOLDED))
def test_a_module_that_became_a_folder_keeps_its_names(folder):
    package = importlib.import_module(f"keras_transfer.{folder}")
    for name in FOLDED[folder]:
        assert getattr(package, name) is not None
        exec(f"from keras_transfer.{folder} import {name}", {})


def test_moved_functions_still_import_with_a_deprecation_warning():
    from keras_transfer.heads.classifier_head import head_layers
    from keras_transfer.recipes.feature_extraction import train_on_features

    with pytest.warns(DeprecationWarning, match="heads.classifier_head.head_layers"):
        from keras_transfer.factory import head_layers as old
    assert old is head_layers
    with pytest.warns(DeprecationWarning, match="recipes.feature_extraction"):
        from keras_transfer.heads import train_on_features as old
    assert old is train_on_features
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new paths do not warn
        assert importlib.import_module("keras_transfer.heads").fit_head is not None


@runs_once_in("jax")
def test_an_import_statement_of_an_old_path_works_in_a_fresh_process():
    code = (
        "import keras_transfer.callbacks, keras_transfer.image_folder as f\n"
        "from keras_transfer.hub import HubLayer\n"
        "from keras_transfer.regularizers import L2SP\n"
        "import keras_transfer.recipes.callbacks as new\n"
        "print(keras_transfer.callbacks is new, f.__name__, HubLayer.__module__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=subprocess_env("jax"),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == [
        "True",
        "keras_transfer.images.folder",
        "keras_transfer.backbones.hub",
    ]


@runs_once_in("jax")
def test_the_top_of_the_package_is_a_short_map():
    entries = sorted(
        p.name
        for p in PACKAGE.iterdir()
        if p.name not in ("__init__.py", "__main__.py", "__pycache__")
    )
    assert len(entries) <= 12, entries


@runs_once_in("jax")
@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_each_folders_docstring_names_its_modules(folder):
    doc = ast.get_docstring(ast.parse((folder / "__init__.py").read_text())) or ""
    modules = {p.stem for p in folder.glob("*.py") if p.name != "__init__.py"}
    unnamed = {m for m in modules if f"`{m}`" not in doc}
    assert unnamed == set(), f"{folder.name}/__init__.py's map leaves out {sorted(unnamed)}"
