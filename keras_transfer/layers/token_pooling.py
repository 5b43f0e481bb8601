import keras
from keras import ops

from keras_transfer.utils import _compat

__all__ = ["TOKEN_POOLINGS", "TokenPooling"]

TOKEN_POOLINGS = ("avg", "max", "avgmax", "cls", "cls+avg", "flatten")


@keras.saving.register_keras_serializable(package="keras_transfer")
class TokenPooling(keras.layers.Layer):
    """Pools a transformer's token sequence `(batch, tokens, width)` into one
    vector per image.

    The sequence starts with `prefix_tokens` tokens that are not image
    patches: the class token (when `class_token=True`, it comes first) and
    any register tokens. `"avg"`, `"max"`, `"avgmax"` and `"flatten"` read
    the patch tokens only; `"cls"` is the class token; `"cls+avg"` is the
    class token and the patch mean concatenated (DINOv2's linear-probe
    read-out).

    Example:

    >>> tokens = np.arange(12, dtype="float32").reshape(1, 3, 4)
    >>> pool = keras_transfer.layers.TokenPooling("cls+avg", prefix_tokens=1)
    >>> keras.ops.convert_to_numpy(pool(tokens))
    array([[0., 1., 2., 3., 6., 7., 8., 9.]], dtype=float32)

    Args:
        mode: one of `"avg"`, `"max"`, `"avgmax"`, `"cls"`, `"cls+avg"`,
            `"flatten"`.
        prefix_tokens: how many tokens before the patches (class and
            register tokens).
        class_token: whether the first of them is a class token.
    """

    def __init__(self, mode="avg", prefix_tokens=0, class_token=None, **kwargs):
        super().__init__(**kwargs)
        if mode not in TOKEN_POOLINGS:
            raise ValueError(f"`mode` must be one of {TOKEN_POOLINGS}. Received: mode={mode!r}")
        if (
            isinstance(prefix_tokens, bool)
            or not isinstance(prefix_tokens, int)
            or prefix_tokens < 0
        ):
            raise ValueError(
                "`prefix_tokens` must be a non-negative int. Received: "
                f"prefix_tokens={prefix_tokens!r}"
            )
        class_token = prefix_tokens > 0 if class_token is None else bool(class_token)
        if mode.startswith("cls") and not class_token:
            raise ValueError(
                f"pooling={mode!r} reads the class token, and this backbone has none "
                "(prefix tokens: "
                f"{prefix_tokens}, class token: {class_token}). Use pooling='avg'. "
                f"Received: pooling={mode!r}"
            )
        if class_token and prefix_tokens < 1:
            raise ValueError(
                "A class token is one of the prefix tokens. Received: class_token=True "
                f"with prefix_tokens={prefix_tokens}"
            )
        self.mode, self.prefix_tokens, self.class_token = mode, prefix_tokens, class_token
        _compat.mark_built_at_init(self)

    def call(self, inputs):
        patches = inputs[:, self.prefix_tokens :, :]
        if self.mode == "avg":
            return ops.mean(patches, axis=1)
        if self.mode == "max":
            return ops.max(patches, axis=1)
        if self.mode == "avgmax":
            return ops.concatenate([ops.mean(patches, axis=1), ops.max(patches, axis=1)], -1)
        if self.mode == "flatten":
            return ops.reshape(patches, (ops.shape(patches)[0], -1))
        if self.mode == "cls":
            return inputs[:, 0, :]
        return ops.concatenate([inputs[:, 0, :], ops.mean(patches, axis=1)], axis=-1)

    def compute_output_shape(self, input_shape):
        batch, tokens, width = input_shape
        if self.mode == "flatten":
            patches = None if tokens is None else tokens - self.prefix_tokens
            return (batch, None if patches is None or width is None else patches * width)
        return (batch, width * (2 if self.mode in ("avgmax", "cls+avg") else 1))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "mode": self.mode,
                "prefix_tokens": self.prefix_tokens,
                "class_token": self.class_token,
            }
        )
        return config
