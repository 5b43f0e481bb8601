"""Every `Example:` in the public docstrings runs and prints what it says."""

import doctest
import importlib
import pkgutil

import keras
import numpy as np
import pytest

import keras_transfer

MODULES = sorted(
    name
    for _, name, _ in pkgutil.walk_packages(keras_transfer.__path__, "keras_transfer.")
    if not name.endswith("__main__")
)
# TF-Hub SavedModels run on the TensorFlow backend only.
TENSORFLOW_ONLY = {"keras_transfer.backbones.hub"}
MODULES = [
    pytest.param(name, marks=pytest.mark.tensorflow_only) if name in TENSORFLOW_ONLY else name
    for name in MODULES
]


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples_run(module_name):
    module = importlib.import_module(module_name)
    globs = {"np": np, "keras": keras, "keras_transfer": keras_transfer, "kt": keras_transfer}
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, module_name, globs=globs):
        if test.examples:
            keras.utils.set_random_seed(0)
            runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {module_name}"
