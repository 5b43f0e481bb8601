"""The `keras-transfer` sub-commands, one module each (`fit`, `evaluate`,
`predict`, `extract`, `backbones`, `demo`, `rank`, `export`): what
`cli.main` runs once it has parsed the arguments and quietened the
backend's start-up logs."""

from keras_transfer.commands._shared import USAGE_ERRORS, UsageError
from keras_transfer.guards import NonFiniteLossError

__all__ = ["NonFiniteLossError", "USAGE_ERRORS", "UsageError"]
