"""The allowed values of the library's options: one source of truth, and
no import of Keras, so the command line can offer them before it loads a
backend."""

__all__ = [
    "BN_POLICIES",
    "EXPORT_BACKENDS",
    "EXPORT_FORMATS",
    "FUSIONS",
    "POOLINGS",
    "PRECISION_POLICIES",
    "PREPROCESSING_MODES",
    "QUANTIZATIONS",
    "check_bn",
]

# "auto": "avg" for a CNN, the family's read-out for a transformer; "cls"
# and "cls+avg" read a transformer's class token.
POOLINGS = ("auto", "avg", "max", "avgmax", "flatten", "cls", "cls+avg", None)
FUSIONS = ("concat", "sum", "mean", "weighted", "attention")
# What BatchNormalization does in an unfrozen backbone (see BackboneModel).
BN_POLICIES = ("inference", "train_affine", "train")
PRECISION_POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")
# ImagePreprocessing's modes; transfer(preprocessing=...) also takes "auto".
PREPROCESSING_MODES = ("caffe", "tf", "torch", "unit", "none")
# The backends Keras exports each format from with the `export` extra's
# converters. Keras also exports LiteRT from torch through litert-torch,
# ONNX from JAX through jax2onnx, and a SavedModel from torch through
# torch_xla; they bring large stacks (transformers, flax, XLA), so they are
# refused with the backend to use instead.
EXPORT_BACKENDS = {
    "litert": ("tensorflow",),
    "onnx": ("tensorflow", "torch"),
    "saved_model": ("tensorflow", "jax"),
}
EXPORT_FORMATS = tuple(EXPORT_BACKENDS)
# LiteRT's: float16 weights, int8 weights (dynamic range), or int8 weights
# and activations calibrated on representative images.
QUANTIZATIONS = ("none", "float16", "dynamic", "int8")


def check_bn(bn, allow_none=False, argument="bn"):
    """The one check of a BatchNorm policy argument."""
    if bn in BN_POLICIES or (allow_none and bn is None):
        return bn
    allowed = BN_POLICIES + ((None,) if allow_none else ())
    raise ValueError(f"`{argument}` must be one of {allowed}. Received: {argument}={bn!r}")
