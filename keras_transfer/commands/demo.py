"""`keras-transfer demo`: the comparison of strategies."""

from keras_transfer.commands import demo_table as demo
from keras_transfer.commands._shared import parse_backbone_args

__all__ = ["demo_command"]


def demo_command(args):
    """The comparison of strategies (digits by default; photos with --data)."""
    demo.run(
        data=args.data,
        weights=args.weights,
        backbone=args.backbone,
        backbone_kwargs=parse_backbone_args(args.backbone_arg),
        out=args.out,
        epochs=args.epochs,
        image_size=args.image_size,
        shots=args.shots,
        seed=args.seed,
        overwrite=args.overwrite,
        quiet=args.quiet,
    )
