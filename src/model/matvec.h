#pragma once
// Matrix-vector products straight from stored weights, for decode steps.
//
// A decode step multiplies every weight matrix by one activation row, so it
// is bound by the bytes of weights read, not by arithmetic: reading the
// checkpoint's bf16 (or f16) values and widening them in registers moves half
// the bytes of a float32 copy, and keeps no float32 copy resident.
#include <cstdint>

#include "kvq/model/safetensors.h"

namespace kvq {

// y[r] = sum_i w[r][i] * x[i] (accumulate: y[r] += that sum), r < rows, for w
// [rows, cols] row-major in `dtype` (F32, F16 or BF16; any alignment), x
// [cols], y [rows]. Each weight is widened exactly to float; products and
// sums are float, per row in lanes (four vector accumulators, then the lane
// sum, then the scalar tail), so the rounding depends on the SIMD target but
// never on the thread count. OpenMP over blocks of rows.
void MatVec(DType dtype, const void* w, int64_t rows, int64_t cols, const float* x, float* y,
            bool accumulate);

}  // namespace kvq
