"""Frozen features: extraction, the on-disk store, and what they tell.

- `sources`: arrays, folders and streams, with their fingerprints.
- `extract`: running the backbone (`extract_features`).
- `store`: the format, its writer and readers; `shards` joins the parts
  of a sharded extraction; `features`: the `Features` container.
- `transferability`: scores of how well features suit a labelled task
  (`SCORES`: a new score is a function and a row there).
- `ranking`: `rank`, which backbone and layer, by those scores.
"""

from keras_transfer.features.extract import extract_features
from keras_transfer.features.features import Features

__all__ = ["Features", "extract_features"]
