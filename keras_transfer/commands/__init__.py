"""The command line. Its sub-commands, one module each (`fit`, `evaluate`,
`predict`, `extract`, `backbones`, `demo`, `rank`, `export`), run once `cli`
has parsed the arguments with no backend loaded, so `--help` is instant,
and quietened the backend's start-up logs. `_shared` holds what they share,
the usage errors (exit code 2) first; `demo_table` is the demo's comparison
of strategies. A new sub-command is a module here and a row in `cli`.
"""

__all__ = []
