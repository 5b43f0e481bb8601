"""What every other folder leans on; nothing here imports the rest.

- `_options`: the allowed values of the options (no backend: the command
  line's help reads them).
- `_compat`: every use of Keras internals, dated.
- `_io`: atomic writes, checksums, replacing only what the library wrote.
- `_network`: downloads that fail offline, with one clear error.
- `guards`: the checks at the door (finite data, rates, batch sizes), and
  the callback that stops a fit whose loss is not finite.
- `labels`: the one check of class labels.
- `multi_worker`: `fit` under a multi-worker distribution on Keras 3.
"""

__all__ = []
