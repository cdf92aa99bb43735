#pragma once
// The fused kernels (kvq/quant/fused.h), one per format, each compiled for
// every SIMD target and dispatched at run time: int<b> of every granularity
// (int.cpp); fp16, fp8 and nvfp4 (float.cpp); ggml's q8_0, q4_0, q4_1 and
// iq4_nl (ggml.cpp). Each is its format's FormatTraits::fused.
#include <cstdint>

#include "kvq/quant/format.h"
#include "kvq/quant/fused.h"
#include "kvq/quant/kernels.h"

namespace kvq {

// The largest head_dim of the fused +had kernel (int<b>:token+had; its rows
// of a batch of tokens stay in L1).
inline constexpr int kMaxFusedHadamardDim = 256;

// FusedQuantizeHead's arguments.
struct FusedCall {
  const FormatSpec& format;
  int64_t chunk_len;
  const uint16_t* x_half;
  const float* x_float;
  int64_t tokens;
  int head_dim;
  const HeadStats* stats;
  float* y;
  QdqErrorSums* sums;
};

void FusedIntHead(const FusedCall& call);
void FusedFp16Head(const FusedCall& call);
void FusedFp8Head(const FusedCall& call);  // e4m3 and e5m2.
void FusedNvfp4Head(const FusedCall& call);
void FusedQ8_0Head(const FusedCall& call);
void FusedQ4_0Head(const FusedCall& call);
void FusedQ4_1Head(const FusedCall& call);
void FusedIq4NlHead(const FusedCall& call);

}  // namespace kvq
