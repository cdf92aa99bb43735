#!/usr/bin/env python3
"""Writes a random-weight Qwen2.5-0.5B-shaped model as a GGUF file for
llama.cpp, the model bench/reference/llama/llama_decode.mjs times: the shape of
bench_generate's model (24 layers, hidden 896, 14 query heads on 2 KV heads,
head_dim 64, MLP 4864, vocab 151936, tied embeddings, q/k/v bias, RoPE theta
1e6, RMS norm eps 1e-6), architecture `qwen2`.

Weight matrices and the embedding are BF16 (2 bytes a weight, as kvq's
bench model stores them, so both read the same bytes per token); norms and
biases are F32, as llama.cpp's own converter writes 1-D tensors. Values are
N(0, 0.02) from a fixed seed (speed does not depend on them, only on their
being finite). The vocabulary is a placeholder of the right size, since a
benchmark feeds token ids: a byte-level BPE ("gpt2") vocabulary whose ids
0-255 are the 256 byte tokens and whose other ids are the texts "t256",
"t257", ..., with no merges. (tokenizer.ggml.model "none" would describe
this better, but node-llama-cpp tokenizes text while loading a model and
llama.cpp aborts on that without a tokenizer.)

Layout (GGUF version 3, little-endian): "GGUF", version u32, tensor count
u64, key-value count u64; the key-value pairs (key as u64 length + bytes,
value type u32, value); per tensor its name, dimension count u32, dimensions
u64 (innermost first: a [rows, cols] matrix is written as cols, rows), ggml
type u32 and data offset u64; zero padding to the 32-byte alignment; the
tensor data, each tensor starting at a multiple of 32.

Usage: /usr/bin/python3 bench/reference/write_gguf.py [--out PATH]
Default PATH: $TMPDIR/kvq-bench-models/qwen2.5-0.5b-bf16.gguf (about 1 GB;
written once: an existing file is kept). Needs numpy (Debian's python3-numpy).
"""
import argparse
import os
import struct
import sys
import tempfile

try:
    import numpy as np
except ImportError:
    sys.exit("write_gguf.py: needs numpy (Debian's python3-numpy: run it with /usr/bin/python3)")

LAYERS, HIDDEN, HEADS, KV_HEADS, HEAD_DIM, MLP, VOCAB = 24, 896, 14, 2, 64, 4864, 151936
THETA, EPS, MAX_POSITIONS = 1e6, 1e-6, 32768
ALIGNMENT = 32

# GGUF metadata value types and ggml tensor types (the subset used here).
GGUF_UINT32, GGUF_FLOAT32, GGUF_STRING, GGUF_ARRAY = 4, 6, 8, 9
GGML_F32, GGML_BF16 = 0, 30


def tensor_shapes():
    """(name, shape as [rows, cols] or [n], ggml type) in file order."""
    yield "token_embd.weight", (VOCAB, HIDDEN), GGML_BF16
    for layer in range(LAYERS):
        p = f"blk.{layer}."
        yield p + "attn_norm.weight", (HIDDEN,), GGML_F32
        yield p + "attn_q.weight", (HEADS * HEAD_DIM, HIDDEN), GGML_BF16
        yield p + "attn_q.bias", (HEADS * HEAD_DIM,), GGML_F32
        yield p + "attn_k.weight", (KV_HEADS * HEAD_DIM, HIDDEN), GGML_BF16
        yield p + "attn_k.bias", (KV_HEADS * HEAD_DIM,), GGML_F32
        yield p + "attn_v.weight", (KV_HEADS * HEAD_DIM, HIDDEN), GGML_BF16
        yield p + "attn_v.bias", (KV_HEADS * HEAD_DIM,), GGML_F32
        yield p + "attn_output.weight", (HIDDEN, HEADS * HEAD_DIM), GGML_BF16
        yield p + "ffn_norm.weight", (HIDDEN,), GGML_F32
        yield p + "ffn_gate.weight", (MLP, HIDDEN), GGML_BF16
        yield p + "ffn_up.weight", (MLP, HIDDEN), GGML_BF16
        yield p + "ffn_down.weight", (HIDDEN, MLP), GGML_BF16
    # No output.weight: llama.cpp's qwen2 reuses token_embd (tied embeddings).
    yield "output_norm.weight", (HIDDEN,), GGML_F32


def metadata():
    """(key, GGUF type, value) pairs llama.cpp's qwen2 loader reads."""
    return [
        ("general.architecture", GGUF_STRING, "qwen2"),
        ("general.name", GGUF_STRING, "random Qwen2.5-0.5B shape (kvq bench)"),
        ("qwen2.context_length", GGUF_UINT32, MAX_POSITIONS),
        ("qwen2.embedding_length", GGUF_UINT32, HIDDEN),
        ("qwen2.block_count", GGUF_UINT32, LAYERS),
        ("qwen2.feed_forward_length", GGUF_UINT32, MLP),
        ("qwen2.attention.head_count", GGUF_UINT32, HEADS),
        ("qwen2.attention.head_count_kv", GGUF_UINT32, KV_HEADS),
        ("qwen2.rope.freq_base", GGUF_FLOAT32, THETA),
        ("qwen2.attention.layer_norm_rms_epsilon", GGUF_FLOAT32, EPS),
        ("tokenizer.ggml.model", GGUF_STRING, "gpt2"),
        ("tokenizer.ggml.pre", GGUF_STRING, "qwen2"),
        ("tokenizer.ggml.tokens", GGUF_ARRAY, placeholder_vocabulary()),
        ("tokenizer.ggml.merges", GGUF_ARRAY, []),
    ]


def byte_tokens():
    """The 256 one-character texts byte-level BPE uses for the bytes 0-255:
    printable Latin-1 bytes stand for themselves, the others for the code
    points from 256 up, in byte order (GPT-2's bytes_to_unicode)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    texts, shifted = [], 256
    for byte in range(256):
        if byte in printable:
            texts.append(chr(byte))
        else:
            texts.append(chr(shifted))
            shifted += 1
    return texts


def placeholder_vocabulary():
    # Placeholder texts are ASCII letters and digits, which byte-level BPE
    # maps to themselves, so llama.cpp can turn every token back into bytes.
    return byte_tokens() + [f"t{i}" for i in range(256, VOCAB)]


def gguf_string(text):
    data = text.encode("utf-8")
    return struct.pack("<Q", len(data)) + data


def gguf_value(kind, value):
    if kind == GGUF_ARRAY:  # of strings
        return struct.pack("<IQ", GGUF_STRING, len(value)) + b"".join(map(gguf_string, value))
    if kind == GGUF_UINT32:
        return struct.pack("<I", value)
    if kind == GGUF_FLOAT32:
        return struct.pack("<f", value)
    return gguf_string(value)


def padding(offset):
    return -offset % ALIGNMENT


def tensor_bytes(shape, kind):
    return int(np.prod(shape)) * (2 if kind == GGML_BF16 else 4)


def header(tensors):
    """Everything before the tensor data, padded to the alignment."""
    keys = metadata()
    out = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(keys)))
    for key, kind, value in keys:
        out += gguf_string(key) + struct.pack("<I", kind) + gguf_value(kind, value)
    offset = 0
    for name, shape, kind in tensors:
        out += gguf_string(name) + struct.pack("<I", len(shape))
        out += struct.pack(f"<{len(shape)}Q", *reversed(shape))  # innermost first
        out += struct.pack("<IQ", kind, offset)
        offset += tensor_bytes(shape, kind)
        offset += padding(offset)
    out += bytes(padding(len(out)))
    return bytes(out)


def to_bf16(values):
    """float32 -> bf16 bits, rounding to nearest even (values are finite)."""
    bits = values.view(np.uint32)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def tensor_data(rng, name, shape, kind):
    if name.endswith("norm.weight"):
        values = np.ones(shape, dtype=np.float32)
    else:
        values = rng.standard_normal(shape, dtype=np.float32)
        values *= np.float32(0.02)
    return (to_bf16(values) if kind == GGML_BF16 else values).tobytes()


def main():
    default = os.path.join(tempfile.gettempdir(), "kvq-bench-models", "qwen2.5-0.5b-bf16.gguf")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=default, help=f"GGUF file to write (default {default})")
    args = parser.parse_args()
    if os.path.exists(args.out):
        print(f"{args.out} exists; kept")
        return
    tensors = list(tensor_shapes())
    rng = np.random.default_rng(42)
    partial = args.out + ".partial"  # renamed when complete: never a half-written model
    try:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(partial, "wb") as f:
            f.write(header(tensors))
            for name, shape, kind in tensors:
                data = tensor_data(rng, name, shape, kind)
                f.write(data + bytes(padding(len(data))))
    except OSError as error:
        if os.path.exists(partial):
            os.remove(partial)
        sys.exit(f"write_gguf.py: cannot write {args.out}: {error.strerror}")
    os.replace(partial, args.out)
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 1e9:.2f} GB, {len(tensors)} tensors)")


if __name__ == "__main__":
    main()
