"""The strategy table: every row names a recipe, `transfer()` builds what
that recipe starts from, and the command line offers the same names."""

import inspect

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


def _fit_parser():
    (fit,) = [
        action.choices["fit"]
        for action in cli._parser()._actions
        if getattr(action, "choices", None) and "fit" in action.choices
    ]
    return fit


def test_the_command_line_offers_the_tables_names():
    fit = _fit_parser()
    (strategy,) = [a for a in fit._actions if a.dest == "strategy"]
    assert tuple(strategy.choices) == strategies.NAMES and strategy.default == "auto"


def _signature_defaults(function):
    return {
        name: p.default
        for name, p in inspect.signature(function).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


def test_a_rows_defaults_are_its_recipes_and_the_command_lines():
    from keras_transfer.heads.feature_heads import fit_head

    fit = _fit_parser()
    for row in strategies.STRATEGIES.values():
        assert set(dict(row.defaults)) <= set(row.options), row.name
        assert set(row.flags) <= {o for a in fit._actions for o in a.option_strings}, row.name
        recipe = _signature_defaults(row.load_recipe())
        for option, value in row.defaults:
            # The fixed recipe fills `None` from the row (bench/recipes.py pins it).
            assert recipe[option] in (value, None), (row.name, option)
            flag = strategies.FLAGS[option]
            (action,) = [a for a in fit._actions if flag in a.option_strings]
            assert f"{row.name} {value:g}" in action.help, (flag, action.help)
    head = dict(strategies.get("feature_extraction").defaults)
    assert {k: _signature_defaults(fit_head)[k] for k in head} == head
    with pytest.raises(ValueError, match=r"'auto' strategy sets no default .*Received: option="):
        strategies.get("auto").default("epochs")
    # Where two values disagreed, the fixed recipe's won (#42).
    assert dict(strategies.get("fine_tune").defaults) == {
        "epochs": 5,
        "freeze_epochs": 1,
        "base_lr": 2e-3,
    }


def test_the_demos_rows_are_the_baselines_then_the_strategies_it_names():
    from keras_transfer.commands import demo_table

    named = [row.demo for row in strategies.STRATEGIES.values() if row.demo]
    assert demo_table.ROWS == (*strategies.BASELINES, *named)
    assert set(demo_table._RUNS) == set(demo_table.ROWS)
