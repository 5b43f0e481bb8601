"""`keras-transfer backbones`: the registered backbones."""

import json

from keras_transfer.backbones import registry

__all__ = ["backbones"]


def backbones(args):
    """Lists the registered backbones: keras.applications, then KerasHub's
    presets when the keras-hub extra is installed."""
    rows = registry.table() + registry.keras_hub_table()
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    if args.markdown:
        print(registry.markdown_table())
        return
    header = ("name", "family", "size", "min", "preprocessing", "blocks", "parameters")
    wide = [max(len(str(r[k])) for r in rows + [{"name": "", "family": ""}]) for k in header[:2]]
    wide = [max(18, w) for w in wide]
    print("  ".join(f"{h:<{wide[i]}}" if i < 2 else f"{h:>13}" for i, h in enumerate(header)))
    for r in rows:
        cells = [
            "-" if r[k] is None else f"{r[k]:,}" if k == "parameters" else str(r[k])
            for k in ("input_size", "min_size", "preprocessing", "blocks", "parameters")
        ]
        print(
            f"{r['name']:<{wide[0]}}  {r['family']:<{wide[1]}}  "
            + "  ".join(f"{c:>13}" for c in cells)
        )
    if not any("KerasHub" in r["family"] for r in rows):
        print("KerasHub presets: pip install 'keras-transfer[keras-hub]'")
