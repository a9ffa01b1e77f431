#!/usr/bin/env python3
"""Independent reader for the gateway's export directories (used by tests/tests/export_*.rs).

    python3 read_export.py DIR {parquet|json}

Checks the directory against its _manifest.json (every data file listed and present, no
unlisted data file, row counts, sizes and SHA-256 match, nothing left in _staging), reads
every row with pyarrow (Parquet) or gzip + json (JSON), checks that each row lies in its
dt=/hour= partition, also reads Parquet as a Hive-partitioned dataset, and prints one line
per row, tab-separated and sorted:

    device boot seq t_ms time_ms received_ms channel kind value(float32 bits, hex)

Exits 2 naming what is missing when pyarrow is not installed.
"""
import gzip
import hashlib
import json
import os
import struct
import sys
from datetime import datetime, timezone


def fail(msg):
    print(f"read_export.py: {msg}", file=sys.stderr)
    sys.exit(1)


def f32_bits(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


def partition_of(ms):
    t = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    return f"dt={t:%Y-%m-%d}/hour={t:%H}"


def main():
    if len(sys.argv) != 3 or sys.argv[2] not in ("parquet", "json"):
        fail("usage: read_export.py DIR parquet|json")
    root, fmt = sys.argv[1], sys.argv[2]
    if fmt == "parquet":
        try:
            import pyarrow.parquet as pq  # noqa: F401
            import pyarrow.dataset as ds  # noqa: F401
        except ImportError as e:
            print(f"read_export.py: the Python module pyarrow is missing ({e}); "
                  "install it with: python3 -m pip install pyarrow "
                  "(tests/install-prerequisites does)", file=sys.stderr)
            sys.exit(2)
    with open(os.path.join(root, "_manifest.json")) as f:
        manifest = json.load(f)
    if manifest["format"] != fmt:
        fail(f"manifest format {manifest['format']}, expected {fmt}")
    ext = ".parquet" if fmt == "parquet" else ".json.gz"
    listed = {e["path"]: e for e in manifest["files"]}
    if len(listed) != len(manifest["files"]):
        fail("a file is listed twice")
    on_disk = set()
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        dirnames[:] = [d for d in dirnames if not d.startswith(("_", "."))]
        for name in filenames:
            if name.startswith(("_", ".")):
                continue
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            on_disk.add(rel)
    staging = os.path.join(root, "_staging")
    if os.path.isdir(staging) and os.listdir(staging):
        fail(f"_staging is not empty: {os.listdir(staging)}")
    if on_disk != set(listed):
        fail(f"unlisted files {sorted(on_disk - set(listed))}, missing files {sorted(set(listed) - on_disk)}")
    total = {"files": 0, "rows": 0, "bytes": 0}
    rows = []
    for rel, entry in sorted(listed.items()):
        path = os.path.join(root, rel)
        data = open(path, "rb").read()
        if len(data) != entry["bytes"]:
            fail(f"{rel}: {len(data)} bytes, manifest says {entry['bytes']}")
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            fail(f"{rel}: SHA-256 differs from the manifest")
        if not rel.endswith(ext):
            fail(f"{rel}: not a {ext} file")
        part = os.path.dirname(rel)
        if fmt == "parquet":
            table = pq.read_table(path)
            cols = {n: table.column(n).to_pylist() for n in table.column_names}
            for n in ("time_ms", "received_ms"):
                cols[n] = table.column(n).cast("int64").to_pylist()
            want = ["device", "boot", "seq", "t_ms", "time_ms", "received_ms", "channel", "kind", "value"]
            if table.column_names != want:
                fail(f"{rel}: columns {table.column_names}")
            if str(table.schema.field("time_ms").type) != "timestamp[ms, tz=UTC]":
                fail(f"{rel}: time_ms is {table.schema.field('time_ms').type}")
            file_rows = []
            for i in range(table.num_rows):
                file_rows.append(tuple(cols[n][i] for n in want[:8]) + (f32_bits(cols["value"][i]),))
        else:
            file_rows = []
            for line in gzip.decompress(data).decode("utf-8").splitlines():
                o = json.loads(line)
                file_rows.append((o["device"], o["boot"], o["seq"], o["t_ms"], o["time_ms"], o["received_ms"],
                                  o["channel"], o["kind"], f32_bits(o["value"])))
        if len(file_rows) != entry["rows"]:
            fail(f"{rel}: {len(file_rows)} rows, manifest says {entry['rows']}")
        for row in file_rows:
            if partition_of(row[4]) != part:
                fail(f"{rel}: a row at {row[4]} is outside its partition")
        times = [row[4] for row in file_rows]
        if times and (min(times) != entry["min_time_ms"] or max(times) != entry["max_time_ms"]):
            fail(f"{rel}: time range differs from the manifest")
        total["files"] += 1
        total["rows"] += len(file_rows)
        total["bytes"] += len(data)
        rows.extend(file_rows)
    if total != manifest["totals"]:
        fail(f"totals {total}, manifest says {manifest['totals']}")
    if fmt == "parquet" and listed:
        # The directory as a partitioned table, the way Athena/Spark/Glue see it.
        dataset = ds.dataset(root, format="parquet", partitioning="hive",
                             exclude_invalid_files=False, ignore_prefixes=["_", "."])
        t = dataset.to_table(columns=["seq", "dt", "hour"])
        if t.num_rows != total["rows"]:
            fail(f"hive dataset has {t.num_rows} rows, files have {total['rows']}")
    exported = 0
    for ranges in manifest["exported"].values():
        exported += sum(to - frm + 1 for _, frm, to in ranges)
    if exported != total["rows"]:
        fail(f"exported set holds {exported} readings, files hold {total['rows']}")
    rows.sort()
    out = sys.stdout
    for r in rows:
        out.write("\t".join(str(x) for x in r[:8]) + f"\t{r[8]:08x}\n")


if __name__ == "__main__":
    main()
