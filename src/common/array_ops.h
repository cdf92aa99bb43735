#pragma once
// Array loops of the generic (not fused) quantization and error paths, in
// lanes on Highway (array_ops.cpp), dispatched at run time. Each equals the
// plain scalar loop it replaces: min and max are exact in any order, the
// conversions are exact or round like the scalar code, and the Hadamard
// butterfly does the same float operations on the same operands.
#include <cstdint>

namespace kvq {

// max |x[i]| (0 for n = 0); NaNs are passed over, as std::max(m, |x|) does.
float AbsMaxOf(const float* x, int64_t n);

// min and max of x, +inf / -inf for n = 0; NaNs passed over as by std::min
// and std::max. -0 and +0 are not told apart (callers add +0).
void MinMaxOf(const float* x, int64_t n, float& lo, float& hi);

// Whether every x[i] is finite.
bool AllFiniteOf(const float* x, int64_t n);

// y[i] = RoundToHalf(x[i]) (nearest even; x and y may be the same array).
void RoundToHalfArray(const float* x, float* y, int64_t n);

// Adds sum (x - y)^2 and sum x^2 (in double lanes, four independent
// accumulators) and max |x| to the totals.
void AddErrorSumsOf(const float* x, const float* y, int64_t n, double& sse, double& sum_sq,
                    float& max_abs);

// The unnormalised fast Walsh-Hadamard butterfly of each of rows rows of n
// values (n a power of two), then each value times norm: stage h pairs
// value j with j + h (a + b low, a - b high), stages in increasing h.
void HadamardButterflyRows(float* x, int64_t rows, int n, float norm);

}  // namespace kvq
