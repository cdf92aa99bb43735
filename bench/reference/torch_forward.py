#!/usr/bin/env python3
"""Tuned PyTorch reference for bench_forward's capture: the Qwen2.5-0.5B
forward pass (24 layers, hidden 896, 14 query heads on 2 KV heads, head_dim
64, MLP 4864, q/k/v bias, RoPE theta 1e6) in fp32 with random weights over
4096 random token ids, as one prompt and as 8 prompts of 512, keeping each
layer's post-RoPE Q/K/V as a capture does. No lm_head (a capture needs none).

"Tuned" is what made PyTorch fastest on this machine kind: fp32 weights in
memory once, query-blocked causal attention (no T x T matrix, no masked
blocks computed), inference mode, all threads. Run with jemalloc preloaded
(LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2).

Usage: bench/reference/torch_forward.py [--threads N]
Needs Debian's python3-torch.
"""
import argparse
import math
import os
import time

import torch

LAYERS, HIDDEN, HEADS, KV_HEADS, HEAD_DIM, MLP, VOCAB = 24, 896, 14, 2, 64, 4864, 151936
THETA, EPS, TOKENS = 1e6, 1e-6, 4096


def rms_norm(x, w):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * w


def rope_tables(chunk_len):
    inv = 1.0 / THETA ** (torch.arange(0, HEAD_DIM, 2, dtype=torch.float32) / HEAD_DIM)
    angles = torch.outer(torch.arange(chunk_len, dtype=torch.float32), inv)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def rope(x, cos, sin):  # x [heads, T, D] of one prompt
    half = HEAD_DIM // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


def attention(q, k, v, block=256):  # [H, T, D], [KVH, T, D] -> [T, H * D]
    group = HEADS // KV_HEADS
    k = k.repeat_interleave(group, dim=0)
    v = v.repeat_interleave(group, dim=0)
    t = q.shape[1]
    out = torch.empty_like(q)
    for s in range(0, t, block):
        e = min(s + block, t)
        scores = torch.matmul(q[:, s:e], k[:, :e].transpose(1, 2)).mul_(1 / math.sqrt(HEAD_DIM))
        scores.masked_fill_(torch.arange(e).unsqueeze(0) > torch.arange(s, e).unsqueeze(1),
                            float("-inf"))
        torch.softmax(scores, dim=-1, out=scores)
        torch.matmul(scores, v[:, :e], out=out[:, s:e])
    return out.transpose(0, 1).reshape(t, HEADS * HEAD_DIM)


def make_weights(gen):
    def rnd(*shape):
        return torch.randn(*shape, generator=gen) * 0.02

    layers = []
    for _ in range(LAYERS):
        layers.append(dict(
            n1=torch.ones(HIDDEN), n2=torch.ones(HIDDEN),
            qkv=rnd(HIDDEN + 2 * KV_HEADS * HEAD_DIM, HIDDEN),
            qkv_b=rnd(HIDDEN + 2 * KV_HEADS * HEAD_DIM),
            o=rnd(HIDDEN, HIDDEN), gate_up=rnd(2 * MLP, HIDDEN), down=rnd(HIDDEN, MLP)))
    return rnd(VOCAB, HIDDEN), layers


def forward(embed, layers, ids, chunk_len):
    x = embed[ids]
    cos, sin = rope_tables(chunk_len)
    dumps = []
    for w in layers:
        h = rms_norm(x, w["n1"])
        qkv = torch.addmm(w["qkv_b"], h, w["qkv"].t())
        q, k, v = qkv.split([HIDDEN, KV_HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM], dim=-1)
        attn = torch.empty(TOKENS, HIDDEN)
        layer_qkv = []
        for c0 in range(0, TOKENS, chunk_len):
            sl = slice(c0, c0 + chunk_len)
            qc = rope(q[sl].reshape(chunk_len, HEADS, HEAD_DIM).transpose(0, 1), cos, sin)
            kc = rope(k[sl].reshape(chunk_len, KV_HEADS, HEAD_DIM).transpose(0, 1), cos, sin)
            vc = v[sl].reshape(chunk_len, KV_HEADS, HEAD_DIM).transpose(0, 1)
            layer_qkv.append((qc, kc, vc))
            attn[sl] = attention(qc, kc, vc)
        dumps.append(layer_qkv)
        x = x + attn @ w["o"].t()
        gu = rms_norm(x, w["n2"]) @ w["gate_up"].t()
        gate, up = gu.split(MLP, dim=-1)
        x = x + (torch.nn.functional.silu(gate) * up) @ w["down"].t()
    return dumps


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="default: every CPU this process may run on (Debian's torch starts with one)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    embed, layers = make_weights(gen)
    ids = torch.randint(0, VOCAB, (TOKENS,), generator=gen)
    print(f"PyTorch {torch.__version__}, {args.threads} threads")
    with torch.inference_mode():
        for chunk_len in (512, 4096):
            start = time.perf_counter()
            forward(embed, layers, ids, chunk_len)
            seconds = time.perf_counter() - start
            print(f"torch capture forward, {TOKENS // chunk_len} x {chunk_len} tokens: "
                  f"{seconds:.2f} s, {TOKENS / seconds:.0f} tok/s")


if __name__ == "__main__":
    main()
