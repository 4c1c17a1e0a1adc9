#!/usr/bin/env python3
"""Rebuild the embedded Fashion-MNIST subset from the full IDX files.

Usage: make_subset.py [SRC_DIR] (default /usr/share/datasets/fashion-mnist, Debian's
dataset-fashion-mnist package). Takes a stratified, seeded sample: 1,000 images per class from the
training set and 200 per class from the test set, keeping the original order within each class.
The gzip headers carry no timestamp, so the output is byte-for-byte reproducible.
"""
import gzip
import random
import struct
import sys
from pathlib import Path

SEED = 20261125
PER_CLASS = {"train": 1000, "t10k": 200}


def read_idx(path):
    data = gzip.open(path).read()
    ndim = data[3]
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    return dims, data[4 + 4 * ndim :]


def write_idx(path, type_code, dims, payload):
    header = bytes([0, 0, type_code, len(dims)]) + struct.pack(">" + "I" * len(dims), *dims)
    with open(path, "wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as out:
            out.write(header + payload)


def main():
    src = Path(sys.argv[1] if len(sys.argv) > 1 else "/usr/share/datasets/fashion-mnist")
    rng = random.Random(SEED)
    for split, per_class in PER_CLASS.items():
        (n, rows, cols), pixels = read_idx(src / f"{split}-images-idx3-ubyte.gz")
        (_,), labels = read_idx(src / f"{split}-labels-idx1-ubyte.gz")
        size = rows * cols
        chosen = []
        for c in range(10):
            idx = [i for i in range(n) if labels[i] == c]
            chosen.extend(sorted(rng.sample(idx, per_class)))
        chosen.sort()
        write_idx(f"{split}-images-idx3-ubyte.gz", 0x08, (len(chosen), rows, cols),
                  b"".join(pixels[i * size : (i + 1) * size] for i in chosen))
        write_idx(f"{split}-labels-idx1-ubyte.gz", 0x08, (len(chosen),),
                  bytes(labels[i] for i in chosen))


if __name__ == "__main__":
    main()
