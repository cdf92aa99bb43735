#pragma once
// The two layouts of per-head activations: token-major [tokens, heads, dim],
// as the model computes Q/K/V rows, and head-major [heads, tokens, dim], as
// dumps store them and the quantizers read one head's [tokens, dim] block.
#include <cstdint>

namespace kvq {

// x [tokens, heads, dim] -> out [heads, tokens, dim]. out must not alias x.
void ToHeadMajor(const float* x, int64_t tokens, int heads, int dim, float* out);

// x [heads, tokens, dim] -> out [tokens, heads, dim]. out must not alias x.
void ToTokenMajor(const float* x, int64_t tokens, int heads, int dim, float* out);

}  // namespace kvq
