#!/usr/bin/env python3
"""Writes the seed corpus for fuzz_safetensors (tests/fuzz/corpus/safetensors/).

Standard library only: the files are built byte by byte as the format says
(8-byte little-endian header length, JSON header, data section), so the seeds
do not depend on the safetensors package. Run from anywhere:
    python3 tests/fuzz/gen_safetensors_corpus.py
"""
import json
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "safetensors")


def st_bytes(tensors, metadata=None, pad=0, raw_header=None):
    """tensors: list of (name, dtype, shape, bytes); offsets follow list order."""
    header, data, off = {}, b"", 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, payload in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(payload)]}
        data += payload
        off += len(payload)
    h = raw_header if raw_header is not None else json.dumps(header, separators=(",", ":")).encode()
    h += b" " * pad
    return struct.pack("<Q", len(h)) + h + data


def f32(*v):
    return struct.pack("<%df" % len(v), *v)


def f16(*v):
    return struct.pack("<%de" % len(v), *v)


def bf16(*v):
    return b"".join(struct.pack("<f", x)[2:] for x in v)


def main():
    os.makedirs(OUT, exist_ok=True)
    seeds = {
        "valid_f32": st_bytes([("w", "F32", [2, 2], f32(1, -2, 0.5, 3e-8))], {"format": "pt"}),
        "valid_f16": st_bytes([("h", "F16", [4], f16(1, -0.0, 6e-8, 65504)),
                               ("inf", "F16", [2], struct.pack("<HH", 0x7C00, 0x7E01))]),
        "valid_bf16": st_bytes([("b", "BF16", [1, 3], bf16(1, -5, 1e-40))], pad=3),
        "valid_mixed": st_bytes([
            ("bert.embeddings.word_embeddings.weight", "F32", [3, 2], f32(*range(6))),
            ("classifier.bias", "BF16", [2], bf16(0.25, -0.25)),
            ("ids", "I64", [2], struct.pack("<qq", -1, 1 << 40)),
            ("i32", "I32", [1], struct.pack("<i", 7)),
            ("u8", "U8", [3], b"\x00\x80\xff"),
            ("empty", "F32", [0, 4], b""),
            ("scalar", "F16", [], f16(2.5)),
        ]),
        "valid_empty": st_bytes([]),
        # broken ones, each a different rejection
        "bad_short": b"\x05\x00\x00",
        "bad_hlen_zero": struct.pack("<Q", 0) + b"{}",
        "bad_hlen_past_end": struct.pack("<Q", 100) + b"{}",
        "bad_json": st_bytes([], raw_header=b'{"w":{"dtype":"F32",'),
        "bad_dup": st_bytes([], raw_header=b'{"a":{"dtype":"U8","shape":[0],"data_offsets":[0,0]},'
                                           b'"a":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}'),
        "bad_overlap": st_bytes([], raw_header=b'{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},'
                                               b'"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}') + bytes(6),
        "bad_hole": st_bytes([], raw_header=b'{"a":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}}') + bytes(4),
        "bad_size": st_bytes([], raw_header=b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}') + bytes(4),
        "bad_dtype": st_bytes([], raw_header=b'{"a":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}}') + bytes(8),
        "bad_huge_shape": st_bytes([], raw_header=b'{"a":{"dtype":"F32","shape":[4294967296,4294967296,16],'
                                                  b'"data_offsets":[0,0]}}'),
        "bad_truncated": st_bytes([("w", "F32", [4], f32(1, 2, 3, 4))])[:-3],
    }
    for name, data in seeds.items():
        with open(os.path.join(OUT, name + ".safetensors"), "wb") as f:
            f.write(data)
    print("wrote %d seeds to %s" % (len(seeds), OUT))


if __name__ == "__main__":
    main()
