"""Recipes: the training of each strategy (`ktr.strategies` is their table).

- `fine_tuning`: `fine_tune`, the one call: `adaptive` (a probe, then
  fine-tuning judged on a held-out slice, then trained again on every
  image where it wins: `linear_probe`, `holdout_judge`, `augmentation`,
  `training_data`) or `fixed` (the head, then everything, one cycle).
- `gradual`: gradual unfreezing (ULMFiT), through `callbacks`.
- `feature_extraction`: a head trained on a frozen backbone's features.
- `lr_finder`, `schedules`, `steps`: the range test, the one-cycle schedule,
  how many steps.

A new strategy is a row in `ktr.strategies` and a recipe here. `fine_tune`
and `SCHEDULES` are also this package's names.
"""

from keras_transfer.recipes.fine_tuning import SCHEDULES, fine_tune

__all__ = ["SCHEDULES", "fine_tune"]
