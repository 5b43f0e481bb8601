"""`keras-transfer rank`: which backbone (or layer) for a folder of photos."""

import ast
import pathlib

from keras_transfer.commands._shared import UsageError, check_positive, parse_weights
from keras_transfer.deploy import report
from keras_transfer.features.ranking import DEFAULT_CACHE, rank
from keras_transfer.images.folder import split_folders

__all__ = ["parse_candidate", "rank_command"]


def rank_command(args):
    """Ranks each `--backbone` (or the `--layers` of one) on DATA_DIR, prints
    the table, and writes `rank.json` and `rank.png` to `--out`."""
    check_positive(args, "batch_size", "image_size")
    root = pathlib.Path(args.data_dir)
    if not root.is_dir():
        raise UsageError(f"DATA_DIR must be a folder of class folders. Received: {str(root)!r}")
    data = split_folders(root).get("train", root)
    candidates = [parse_candidate(spec) for spec in args.backbone]
    for candidate in candidates:
        candidate.setdefault("input_shape", (args.image_size, args.image_size, 3))
    out = report.output_dir(args.out, args.overwrite, inputs=[root])
    report.check_plotting()
    ranking = rank(
        candidates,
        data,
        layers=args.layers,
        by=args.by,
        cache=None if args.no_cache else pathlib.Path(args.cache or DEFAULT_CACHE),
        batch_size=args.batch_size,
        progress=not args.quiet,
    )
    print(ranking)
    with report.staging(out, args.overwrite) as stage:
        report.write_json(stage / "rank.json", ranking.to_dict())
        scored = {row["name"]: row[ranking.by] for row in ranking.rows if row["error"] is None}
        title = f"{ranking.by} (higher is better)"
        report.plot_bars(scored, stage / "rank.png", title=title, ylim=None)
    print(f"written: {out / 'rank.json'}, {out / 'rank.png'}")


def parse_candidate(spec):
    """`NAME[:KEY=VALUE,...]` as a candidate: `weights=` (a file, imagenet or
    none) and `name=` are the candidate's, any other key a constructor
    argument. `mobilenet_v2:alpha=0.35,weights=w.h5`."""
    backbone, _, options = spec.partition(":")
    candidate, kwargs = {"backbone": backbone}, {}
    for pair in filter(None, options.split(",")):
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier() or not backbone:
            raise UsageError(
                "--backbone takes NAME or NAME:KEY=VALUE,... (weights=PATH, name=LABEL, or a "
                f"constructor argument). Received: {spec!r}"
            )
        if key == "weights":
            candidate["weights"] = parse_weights(value)
        elif key == "name":
            candidate["name"] = value
        else:
            try:
                kwargs[key] = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                kwargs[key] = value
    if kwargs:
        candidate["backbone_kwargs"] = kwargs
    return candidate
