"""After training: a model leaves, and a run explains itself.

- `exporter`: `export` to LiteRT, ONNX or a SavedModel, with a parity check
  against the Keras model. A new format is a new row there.
- `inspection`: the top losses, the most confused pairs, Grad-CAM.
- `report`: the run's report (accuracy, per-class table, confusion).
"""

__all__ = []
