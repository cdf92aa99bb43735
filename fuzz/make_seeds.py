#!/usr/bin/env python3
"""Writes the seed corpora fuzz/corpus/<target>/ (run from the repository root).

Seeds are small on purpose (a few KB per target): the test fixtures under
tests/data/ where they are small (config.json files, a shard index,
tokenizer cases) and tiny synthetic files of the formats whose fixtures are
large (safetensors, KV dumps, tokenizer.json, plans, corpora).
"""
import glob
import gzip
import json
import os
import struct

OUT = "fuzz/corpus"


def put(target, name, data):
    os.makedirs(os.path.join(OUT, target), exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(OUT, target, name), "wb") as f:
        f.write(data)


def safetensors(tensors, metadata=None):
    """tensors: [(name, dtype, shape, bytes)] -> the file's bytes."""
    header, offset, blob = {}, 0, b""
    if metadata:
        header["__metadata__"] = metadata
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blob += data
    text = json.dumps(header, separators=(",", ":"))
    text += " " * ((8 - (8 + len(text)) % 8) % 8)
    return struct.pack("<Q", len(text)) + text.encode() + blob


def f32(*values):
    return struct.pack("<%df" % len(values), *values)


def f16(*values):
    return struct.pack("<%de" % len(values), *values)


# safetensors: every float dtype, an integer tensor, metadata, an empty tensor.
put("safetensors", "mixed", safetensors(
    [("a", "F32", [2, 3], f32(1, 2, 3, 4, 5, 6)),
     ("b", "F16", [2], f16(0.5, -2)),
     ("c", "BF16", [2], bytes([0x80, 0x3F, 0x00, 0xC0])),
     ("ids", "I32", [2], struct.pack("<2i", 7, 9)),
     ("empty", "F32", [0, 4], b"")],
    {"format": "pt"}))
put("safetensors", "one", safetensors([("x", "F32", [1], f32(3.5))]))

# tensor_index: the fixture's index and one naming the fuzz target's shards.
with open("tests/data/qwen2-tiny/sharded-f32/model.safetensors.index.json", "rb") as f:
    put("tensor_index", "fixture.json", f.read())
put("tensor_index", "shards.json", json.dumps(
    {"metadata": {"total_size": 32},
     "weight_map": {"a": "model-00001-of-00002.safetensors",
                    "b": "model-00002-of-00002.safetensors"}}))

# config: every fixture's config.json.
for path in sorted(glob.glob("tests/data/*/*/config.json")):
    with open(path, "rb") as f:
        put("config", path.split("/")[2] + "-" + path.split("/")[3] + ".json", f.read())
put("config", "rope.json", json.dumps(
    {"theta": 500000.0, "scaling": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
     "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}))


# tokenizer_json: the tokenizer tests' synthetic byte-level BPE.
def byte_level_char(b):
    printable = lambda x: 0x21 <= x <= 0x7E or 0xA1 <= x <= 0xAC or x >= 0xAE
    if printable(b):
        return chr(b)
    return chr(256 + sum(1 for x in range(b) if not printable(x)))


vocab = {byte_level_char(b): b for b in range(256)}
vocab.update({"ab": 256, "abc": 257, "\u0120a": 258})
split = {"type": "Split", "pattern": {"Regex": "\\p{L}+|\\s+|[^\\s\\p{L}]+"},
         "behavior": "Isolated", "invert": False}
tokenizer = {
    "version": "1.0", "truncation": None, "padding": None,
    "added_tokens": [{"id": 300, "content": "<x>", "special": True, "normalized": False},
                     {"id": 301, "content": "<x>y", "special": False, "normalized": False}],
    "normalizer": {"type": "NFC"},
    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        split, {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}]},
    "post_processor": None, "decoder": {"type": "ByteLevel"},
    "model": {"type": "BPE", "dropout": None, "unk_token": None, "byte_fallback": False,
              "vocab": vocab, "merges": [["a", "b"], ["ab", "c"], ["\u0120", "a"]]},
}
put("tokenizer_json", "synthetic.json", json.dumps(tokenizer, ensure_ascii=False))
tokenizer["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}
tokenizer["model"]["merges"] = ["a b", "ab c", "\u0120 a"]
tokenizer["normalizer"] = None
put("tokenizer_json", "gpt2-regex.json", json.dumps(tokenizer, ensure_ascii=False))
# Added tokens that are prefixes, suffixes and infixes of one another (and one
# content twice), over the bytes of the text the target encodes.
overlapping = ["<", "<x", "<x>", "<x>y", "x>", "x>y", ">y", "y", "ab", "abc", "b", "bc", "<x>",
               "l", "lo", "llo", "ello", "Hello", "Hello,", "o, w", "\n\n", "\n\n ", " 1", "123"]
tokenizer["added_tokens"] = [{"id": 300 + i, "content": c, "special": False, "normalized": False}
                             for i, c in enumerate(overlapping)]
put("tokenizer_json", "overlapping-added.json", json.dumps(tokenizer, ensure_ascii=False))

# tokenizer_encode: the texts of the tokenizer test cases.
with open("tests/data/tokenizer/cases.jsonl", encoding="utf-8") as f:
    for i, line in enumerate(f):
        put("tokenizer_encode", "case%02d" % i, json.loads(line)["text"])

# strategy: the documented specs.
for i, spec in enumerate([
        "strat3", "fp16", "int8:token", "k=int8:channel,v=int4:g32:token",
        "k=int8:tensor,v=int8:token,k[0.0]=fp16,k[1.*]=fp16", "strat1,k[0-1.*]=fp16",
        "strat3,v=int4:g32:dim", "k=int4:g16:token+prerope+bias+sink4,v=int4:g16:dim",
        "1,2,3", "k=int8:channel,v=int8:token;k=int4:g16:token,v=q4_0",
        "kv=nvfp4+had", "k=iq4_nl:search,v=fp8e4m3", "k=int2:g8:token:asym+recent8+trunc,v=bf16"]):
    put("strategy", "spec%02d" % i, spec)

# plan: a plan for the target's geometry (2 layers x 2 kv heads x 16) and a bigger one.
put("plan", "small.json", json.dumps(
    {"kind": "kvq.plan", "version": 1, "strategy": "strat3",
     "geometry": {"num_layers": 2, "num_kv_heads": 2, "head_dim": 16},
     "k": [["fp16", "int8:tensor"], ["int4:g16:token+prerope", "q4_0"]],
     "v": [["int8:token", "int4:g16:dim"], ["nvfp4", "fp8e5m2"]]}, indent=1))
put("plan", "other.json", json.dumps(
    {"kind": "kvq.plan", "version": 1, "strategy": "x",
     "geometry": {"num_layers": 1, "num_kv_heads": 3, "head_dim": 64},
     "k": [["int8:channel", "int4:g32:token:sym+had", "iq4_nl"]],
     "v": [["int8:token:asym", "q4_1", "bf16"]]}))

# corpus: first byte = kind (0 text, 1 JSON lines, 2 .jsonl.gz as is, 3 JSON lines gzipped by the target).
docs = "".join(json.dumps({"text": t, "timestamp": "2019-04-25", "url": "u"}) + "\n" for t in
               [" The quick brown fox jumps over the lazy dog. ", "Tokenization turns text into integers.\u00a0",
                "\u3000She said, \"It's not my fault!\" \u2014 and walked away.\n"])
wiki = " = Robert Boulter = \n \n Robert Boulter is an English film and television actor . \n \n"
put("corpus", "text", b"\x00" + (wiki * 3).encode())
put("corpus", "jsonl", b"\x01" + docs.encode())
put("corpus", "jsonl-gz", b"\x02" + gzip.compress(docs.encode(), mtime=0))
put("corpus", "jsonl-to-gz", b"\x03" + docs.encode())

# kv_dump: a dump as kvq capture writes it (F16, with k bias) and an F32 one.
def dump(dtype, layers, heads, kv_heads, head_dim, tokens, chunk_len, bias):
    meta = {"format": "pt", "kvq_version": "0.1.0", "kind": "kvq.kv_dump", "model": "tiny",
            "architecture": "Qwen2ForCausalLM", "num_layers": str(layers),
            "num_attention_heads": str(heads), "num_key_value_heads": str(kv_heads),
            "head_dim": str(head_dim), "tokens": str(tokens), "chunk_len": str(chunk_len),
            "rope_theta": "10000", "rope": json.dumps({"theta": 10000.0, "scaling": "default"}),
            "dtype": dtype, "has_k_bias": "true" if bias else "false", "corpus": "wikitext"}
    pack = f16 if dtype == "F16" else f32
    tensors = [("input_ids", "I32", [tokens], struct.pack("<%di" % tokens, *range(tokens)))]
    for l in range(layers):
        for name, h in (("q", heads), ("k", kv_heads), ("v", kv_heads)):
            n = h * tokens * head_dim
            tensors.append(("layers.%d.%s" % (l, name), dtype, [h, tokens, head_dim],
                            pack(*[(i % 7) * 0.25 - 0.75 for i in range(n)])))
        if bias:
            tensors.append(("layers.%d.k_bias" % l, "F32", [kv_heads, head_dim],
                            f32(*[0.125] * (kv_heads * head_dim))))
    return safetensors(tensors, meta)


put("kv_dump", "f16-bias", dump("F16", 1, 2, 1, 4, 4, 2, True))
put("kv_dump", "f32", dump("F32", 2, 2, 2, 2, 2, 2, False))

# Nesting at the limit (64 levels, accepted) and one past it (refused by
# name): the mutations around them exercise the depth check of every JSON
# reader. scripts/fuzz.sh lets inputs grow well past these (-max_len) so
# that far deeper nesting is tried too.
def nested(depth):
    return "[" * depth + "1" + "]" * depth


for depth in (64, 65):
    put("config", "nested-%d.json" % depth, '{"architectures": ["Qwen2ForCausalLM"], "x": %s}'
        % nested(depth - 1))
    put("plan", "nested-%d.json" % depth, '{"kind": "kvq.plan", "k": %s}' % nested(depth - 1))
    put("tokenizer_json", "nested-%d.json" % depth, '{"model": %s}' % nested(depth - 1))
    header = '{"w": {"dtype": %s, "shape": [1], "data_offsets": [0, 4]}}' % nested(depth - 2)
    put("safetensors", "nested-dtype-%d" % depth,
        struct.pack("<Q", len(header)) + header.encode() + b"\0" * 4)
