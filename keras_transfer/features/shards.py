"""Sharded extraction: N processes or machines write one store.

`extract_features(..., shard=(index, count))` writes rows
`[index * N // count, (index + 1) * N // count)` as a part store,
`part-<index>-of-<count>/`, inside the store directory, so no part touches
another's files. The parts join into the store's `manifest.json` once all
are complete, with the same key, and cover the rows without a gap or an
overlap.
"""

import collections

from keras_transfer.features import store

__all__ = ["merge_parts"]


def merge_parts(root):
    """The manifest that joins a store's parts; a `ValueError` lists faults."""
    parts = {name: store.read_manifest(path) for name, path in store.part_dirs(root).items()}
    if not parts:
        raise FileNotFoundError(
            f"No parts of a sharded extraction in {str(root)!r} (no part-*-of-* "
            f"folders). Received: path={str(root)!r}"
        )
    faults = []
    described = {}
    for name, manifest in parts.items():
        if manifest is None or "part" not in manifest:
            faults.append(f"{name}: no manifest (its extraction has not started)")
        elif not manifest.get("complete"):
            faults.append(
                f"{name}: incomplete ({manifest['rows']} rows of "
                f"{manifest['part']['stop'] - manifest['part']['start']})"
            )
        else:
            described[name] = manifest
    counts = {m["part"]["count"] for m in described.values()}
    if len(counts) > 1:
        faults.append(f"parts of different splits: counts {sorted(counts)}")
    count = max(counts | {len(parts)})
    missing = [
        store.part_name(i, count) for i in range(count) if store.part_name(i, count) not in parts
    ]
    if missing:
        faults.append(f"missing parts: {missing}")
    ids = collections.defaultdict(list)
    for name, manifest in described.items():
        ids[manifest["key"]["id"]].append(name)
    if len(ids) > 1:
        faults.append(
            f"parts made with different settings (backbone, weights, layers or data): {dict(ids)}"
        )
    ordered = sorted(described.items(), key=lambda item: item[1]["part"]["start"])
    position = 0
    for name, manifest in ordered:
        part = manifest["part"]
        if part["start"] > position:
            faults.append(f"gap: rows {position}..{part['start']} are in no part")
        elif part["start"] < position:
            faults.append(
                f"overlap: {name} starts at row {part['start']}, before row "
                f"{position} where the part before it ends"
            )
        if manifest["rows"] + part.get("skipped", 0) != part["stop"] - part["start"]:
            faults.append(
                f"{name}: {manifest['rows']} rows for range {part['start']}..{part['stop']}"
            )
        position = max(position, part["stop"])
    totals = {m["part"]["total"] for m in described.values()}
    if described and (len(totals) > 1 or position != max(totals)):
        faults.append(f"the parts end at row {position}, the data has {sorted(totals)} rows")
    if faults:
        raise ValueError(
            f"Cannot merge the sharded feature store at {str(root)!r}: "
            + "; ".join(faults)
            + ". Run the missing or failed parts with the same arguments."
        )
    first = ordered[0][1]
    shards = [
        {
            "rows": shard["rows"],
            "files": {
                set_name: dict(entry, file=f"{name}/{entry['file']}")
                for set_name, entry in shard["files"].items()
            },
        }
        for name, manifest in ordered
        for shard in manifest["shards"]
    ]
    return {
        "format": store.FORMAT,
        "key": first["key"],
        "complete": True,
        "rows": sum(m["rows"] for _, m in ordered),
        "shards": shards,
        "class_names": first.get("class_names"),
        "parts": len(ordered),
    }
