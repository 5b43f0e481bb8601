"""The training strategies: one table of what each builds and how it trains.

A strategy is the model `transfer(..., strategy=NAME)` builds and the
library recipe that trains it. `transfer()`, the command line's
`--strategy` and the demo read this table, and `get(NAME)` looks a row up,
as `keras.optimizers.get` does. A new strategy is a new row and its recipe; a
row carries its recipe's defaults, which the recipe, `keras-transfer fit`
and its help read.

Every recipe takes `(model, train, validation_data=None, *, batch_size,
verbose, callbacks, **options)`, with the options its row names, and
returns a `keras.callbacks.History` whose `model` is the trained model and
whose `phases` list what ran. This module loads no backend: the command
line offers the names before Keras starts.

Example:

>>> keras_transfer.strategies.get("gradual").recipe
'keras_transfer.recipes.gradual.gradual_unfreeze'
>>> keras_transfer.strategies.NAMES
('auto', 'feature_extraction', 'fine_tune', 'gradual')
>>> row = keras_transfer.strategies.get("fine_tune")
>>> row.default("epochs"), row.default("base_lr"), row.flags
(5, 0.002, ('--epochs', '--freeze-epochs', '--lr', '--no-balance'))
"""

import dataclasses
import difflib
import importlib

__all__ = ["BASELINES", "DEMO_ROWS", "FLAGS", "NAMES", "STRATEGIES", "Strategy", "get"]


@dataclasses.dataclass(frozen=True)
class Strategy:
    """One training strategy.

    Attributes:
        name: what `transfer(strategy=...)` and `--strategy` take.
        summary: one line, for help texts.
        trains_backbone: whether `transfer()` leaves the backbone trainable
            (from its `unfreeze` argument); otherwise it is frozen and the
            recipe unfreezes what it trains.
        head: whether `transfer()` builds the classifier. Without it, the
            recipe fits a head on extracted features and attaches it.
        recipe: the dotted path of the recipe function.
        options: the recipe's own options, beyond the data and the batch
            size: what the command line passes to it.
        defaults: `((option, value), ...)`: the values the recipe takes
            when they are not given; the recipe, the command line and its
            help all read them here.
        adaptive: the recipe chooses its own epochs and rates.
        demo: the strategy's row in `keras-transfer demo`, or `None`.
        reads: how the recipe reads the training images: `"each epoch"`
            (worth keeping decoded in memory when they fit: the adaptive
            recipe's probe reads them, then each fine-tuning epoch), or
            `"once"` (features extracted once).
    """

    name: str
    summary: str
    trains_backbone: bool
    head: bool
    recipe: str
    options: tuple = ()
    defaults: tuple = ()
    adaptive: bool = False
    reads: str = "each epoch"
    demo: str | None = None

    def default(self, option):
        """The value the recipe takes for `option` when it is not given."""
        defaults = dict(self.defaults)
        if option not in defaults:
            raise ValueError(
                f"The {self.name!r} strategy sets no default for {option!r}: its defaults are "
                f"{defaults or 'none (it chooses its own)'}. Received: option={option!r}"
            )
        return defaults[option]

    @property
    def flags(self):
        """The command line's flags that set this strategy's options."""
        return tuple(dict.fromkeys(FLAGS[o] for o in self.options if FLAGS.get(o)))

    def load_recipe(self):
        """The recipe function (imports its module, and so Keras)."""
        module, function = self.recipe.rsplit(".", 1)
        return getattr(importlib.import_module(module), function)


STRATEGIES = {
    row.name: row
    for row in (
        Strategy(
            name="auto",
            summary="fine_tune's adaptive recipe: a probe, then fine-tuning from it, kept only "
            "if it beats the probe on a held-out slice of the training images",
            trains_backbone=False,
            head=True,
            recipe="keras_transfer.recipes.fine_tuning.fine_tune",
            options=("seed", "flip", "balance"),
            adaptive=True,
            demo="ktr.fine_tune default",
        ),
        Strategy(
            name="feature_extraction",
            summary="the backbone frozen: its features extracted once, a head trained on them",
            trains_backbone=False,
            head=False,
            recipe="keras_transfer.recipes.feature_extraction.train_on_features",
            options=("num_classes", "epochs", "learning_rate", "progress"),
            # bench/head_epochs.py chose 20: 10 ends 1.1 points under the best on
            # the mean of 24 runs, 40 gains 0.2 for twice the head's time.
            defaults=(("epochs", 20), ("learning_rate", 1e-3)),
            reads="once",
        ),
        Strategy(
            name="fine_tune",
            summary="fine_tune's fixed recipe: the head, then everything under per-block rates",
            trains_backbone=True,
            head=True,
            recipe="keras_transfer.recipes.fine_tuning.fine_tune",
            options=("epochs", "freeze_epochs", "base_lr", "balance"),
            defaults=(("epochs", 5), ("freeze_epochs", 1), ("base_lr", 2e-3)),
        ),
        Strategy(
            name="gradual",
            summary="the head, then the backbone unfrozen a block per epoch from the top",
            trains_backbone=False,
            head=True,
            recipe="keras_transfer.recipes.gradual.gradual_unfreeze",
            options=("epochs", "freeze_epochs", "base_lr", "balance"),
            defaults=(("epochs", 10), ("freeze_epochs", 1), ("base_lr", 1e-3)),
            demo="gradual unfreezing",
        ),
    )
}
NAMES = tuple(STRATEGIES)
# The command line's flag of each recipe option (`fit` passes them on;
# `None`: the command line sets it itself).
FLAGS = {
    "seed": "--seed",
    "flip": "--no-flip",
    "balance": "--no-balance",
    "num_classes": None,
    "epochs": "--epochs",
    "freeze_epochs": "--freeze-epochs",
    "base_lr": "--lr",
    "learning_rate": "--lr",
    "progress": None,
}
# `keras-transfer demo`'s rows that are not strategies: the baselines the
# strategies' rows (`Strategy.demo`) are compared with.
BASELINES = {
    "from scratch": "the same architecture from random weights, trained end to end",
    "feature extraction + SVM": "a linear SVM on the frozen backbone's features",
}
DEMO_ROWS = (*BASELINES, *(row.demo for row in STRATEGIES.values() if row.demo))


def get(identifier):
    """The `Strategy` named `identifier` (a `Strategy` is returned as it is).

    Args:
        identifier: a name in `NAMES`, or a `Strategy`.
    """
    if isinstance(identifier, Strategy):
        return identifier
    if isinstance(identifier, str) and identifier in STRATEGIES:
        return STRATEGIES[identifier]
    close = difflib.get_close_matches(str(identifier), NAMES, n=1)
    raise ValueError(
        f"`strategy` must be one of {NAMES}. Received: strategy={identifier!r}"
        + (f". Did you mean {close[0]!r}?" if close else "")
    )
