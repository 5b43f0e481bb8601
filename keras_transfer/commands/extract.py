"""`keras-transfer extract`: a folder's features to a feature store."""

import pathlib

from keras_transfer.commands._shared import (
    UsageError,
    check_positive,
    parse_backbone_args,
    parse_weights,
)
from keras_transfer.factory import transfer
from keras_transfer.features import extract_features
from keras_transfer.images.folder import split_folders
from keras_transfer.utils import _io

__all__ = ["extract"]


def extract(args):
    """Extracts features to a store (resumable; reused when the key matches).
    A root of split folders (`train/`, `val/`) gives one store per split."""
    check_positive(args, "batch_size", "image_size")
    root, out = pathlib.Path(args.data_dir), pathlib.Path(args.out)
    splits = split_folders(root) if root.is_dir() else {}
    if _io.is_inside(out, root) or _io.is_inside(root, out):
        raise UsageError(
            f"--out may not hold or lie inside the data {str(root)!r}. Received: --out={str(out)!r}"
        )
    classes = {
        name: sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
        for name, path in splits.items()
    }
    if len({tuple(c) for c in classes.values()}) > 1:
        raise UsageError(f"The split folders of {str(root)!r} hold different classes: {classes}")
    size = (args.image_size, args.image_size)
    features = transfer(
        args.backbone,
        weights=parse_weights(args.weights),
        input_shape=size + (3,),
        backbone_kwargs=parse_backbone_args(args.backbone_arg),
        feature_layer=args.layer,
        pooling=args.pooling,
    )
    for data, cache in [(path, out / name) for name, path in splits.items()] or [(root, out)]:
        result = extract_features(
            features,
            data,
            batch_size=args.batch_size,
            cache=cache,
            progress=not args.quiet,
            overwrite=args.overwrite,
        )
        print(
            f"{len(result)} x {result.x.shape[-1]} features of {args.backbone} "
            f"({len(result.class_names or [])} classes) in {cache}"
        )
