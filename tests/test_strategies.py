"""The strategy table: every row names a recipe, `transfer()` builds what
that recipe starts from, and the command line offers the same names."""

import pytest

import keras_transfer as kt
from keras_transfer import strategies
from keras_transfer.commands import cli
from tests.conftest import tiny_backbone


def test_each_row_loads_its_recipe_and_transfer_builds_its_starting_model():
    assert strategies.NAMES == tuple(strategies.STRATEGIES)
    for name in strategies.NAMES:
        row = strategies.get(name)
        assert row.name == name and callable(row.load_recipe()) and row.summary
        model = kt.transfer(tiny_backbone(), 2, strategy=name, preprocessing="unit")
        trains = bool(model.get_layer("backbone").trainable_weights)
        assert trains == row.trains_backbone, name


def test_get_takes_a_row_or_a_name_and_says_what_it_allows():
    row = strategies.get("gradual")
    assert strategies.get(row) is row
    with pytest.raises(
        ValueError, match=r"`strategy` must be one of \('auto', .*Did you mean 'gradual'"
    ):
        strategies.get("gradul")
    with pytest.raises(ValueError, match="Received: strategy=None"):
        strategies.get(None)


def test_the_command_line_offers_the_tables_names():
    (fit,) = [
        action.choices["fit"]
        for action in cli._parser()._actions
        if getattr(action, "choices", None) and "fit" in action.choices
    ]
    (strategy,) = [a for a in fit._actions if a.dest == "strategy"]
    assert tuple(strategy.choices) == strategies.NAMES and strategy.default == "auto"
