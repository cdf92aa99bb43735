#pragma once
// The fused kernel's format families (kvq/quant/fused.h), each compiled for
// every SIMD target and dispatched at run time: int<b> of every granularity
// (int.cpp); fp16, fp8 and nvfp4 (float.cpp); ggml's q8_0, q4_0, q4_1 and
// iq4_nl (ggml.cpp). fused.cpp picks the family.
#include <cstdint>

#include "kvq/quant/format.h"
#include "kvq/quant/fused.h"
#include "kvq/quant/kernels.h"

namespace kvq {

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
void FusedFloatHead(const FusedCall& call);
void FusedGgmlHead(const FusedCall& call);

}  // namespace kvq
