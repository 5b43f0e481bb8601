"""Feature extraction and the on-disk feature store.

One module per job: `sources` (arrays, folders, streams and their
fingerprints), `extract` (running the backbone), `store` (the format, its
writer and readers), `shards` (joining the parts of a sharded extraction),
and `features` (the `Features` container).
"""

from keras_transfer.features.extract import extract_features
from keras_transfer.features.features import Features

__all__ = ["Features", "extract_features"]
