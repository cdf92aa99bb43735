#!/usr/bin/env python3
"""Tuned PyTorch reference for bench_attn: the attention-validation work of
`kvq attn` (24 layers x original + quantized = 48 causal attention calls over
14 query heads on 2 KV heads, head_dim 64) on one 4096-token prompt and on
8 prompts of 512, timed in the same run as kvq so the two can be compared.

"Tuned" means what made PyTorch fastest on this machine kind: causal
attention blocked over queries (no T x T matrix at once, no wasted masked
blocks), all threads, preallocated outputs. Run it with jemalloc preloaded
(LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2), as the reference
figures were: glibc returns large blocks to the OS and every temporary then
pays fresh page faults.

Usage: bench/reference/torch_attention.py [--threads N] [--block 256]
Needs Debian's python3-torch.
"""
import argparse
import math
import os
import time

import torch

LAYERS, HEADS, KV_HEADS, HEAD_DIM, TOKENS = 24, 14, 2, 64, 4096


def causal_attention(q, k, v, chunk_len, block, out):
    """q [H, T, D], k/v [KVH, T, D] -> out [H, T, D]; prompts of chunk_len."""
    group = q.shape[0] // k.shape[0]
    scale = 1.0 / math.sqrt(q.shape[2])
    k = k.repeat_interleave(group, dim=0)
    v = v.repeat_interleave(group, dim=0)
    for c0 in range(0, q.shape[1], chunk_len):
        for s in range(c0, c0 + chunk_len, block):
            e = min(s + block, c0 + chunk_len)
            scores = torch.matmul(q[:, s:e], k[:, c0:e].transpose(1, 2)).mul_(scale)
            rows = torch.arange(s, e).unsqueeze(1)
            cols = torch.arange(c0, e).unsqueeze(0)
            scores.masked_fill_(cols > rows, float("-inf"))
            torch.softmax(scores, dim=-1, out=scores)
            torch.matmul(scores, v[:, c0:e], out=out[:, s:e])


def useful_flops(chunk_len):
    pairs = (TOKENS // chunk_len) * chunk_len * (chunk_len + 1) / 2
    return pairs * HEADS * 4.0 * HEAD_DIM * LAYERS * 2


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="default: every CPU this process may run on (Debian's torch starts with one)")
    parser.add_argument("--block", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(HEADS, TOKENS, HEAD_DIM, generator=gen)
    k = torch.randn(KV_HEADS, TOKENS, HEAD_DIM, generator=gen)
    v = torch.randn(KV_HEADS, TOKENS, HEAD_DIM, generator=gen)
    out = torch.empty_like(q)
    print(f"PyTorch {torch.__version__}, {args.threads} threads, query block {args.block}")
    for chunk_len in (512, 4096):
        causal_attention(q, k, v, chunk_len, args.block, out)  # Warm-up.
        start = time.perf_counter()
        for _ in range(2 * LAYERS):
            causal_attention(q, k, v, chunk_len, args.block, out)
        seconds = time.perf_counter() - start
        print(f"torch attention 48 layer-calls, chunk {chunk_len}: {seconds:.2f} s, "
              f"{useful_flops(chunk_len) / seconds / 1e9:.1f} GFLOP/s useful")


if __name__ == "__main__":
    main()
