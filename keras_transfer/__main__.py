"""`python -m keras_transfer`: the `keras-transfer` command."""

import sys

from keras_transfer.commands.cli import main

sys.exit(main())
