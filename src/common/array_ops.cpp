#include "common/array_ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "common/array_ops.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include "common/hadamard-inl.h"
#include "common/half-inl.h"
#include "common/simd-inl.h"
#include "kvq/common/half.h"

HWY_BEFORE_NAMESPACE();
namespace kvq {
namespace HWY_NAMESPACE {

// Reductions that pass NaNs over as std::max(m, v) / std::min(m, v) do.
template <class V>
HWY_INLINE V MaxKeepingOrdered(V m, V v) {
  return hn::IfThenElse(hn::Lt(m, v), v, m);
}
template <class V>
HWY_INLINE V MinKeepingOrdered(V m, V v) {
  return hn::IfThenElse(hn::Lt(v, m), v, m);
}

float AbsMaxOf(const float* x, int64_t n) {
  const hn::ScalableTag<float> d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  auto lane = hn::Zero(d);
  int64_t i = 0;
  for (; i + lanes <= n; i += lanes) lane = MaxKeepingOrdered(lane, hn::Abs(hn::LoadU(d, x + i)));
  float m = hn::GetLane(hn::MaxOfLanes(d, lane));
  for (; i < n; ++i) m = std::max(m, std::fabs(x[i]));
  return m;
}

void MinMaxOf(const float* x, int64_t n, float& lo, float& hi) {
  const hn::ScalableTag<float> d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  constexpr float kInf = std::numeric_limits<float>::infinity();
  auto lane_lo = hn::Set(d, kInf), lane_hi = hn::Set(d, -kInf);
  int64_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    const auto v = hn::LoadU(d, x + i);
    lane_lo = MinKeepingOrdered(lane_lo, v);
    lane_hi = MaxKeepingOrdered(lane_hi, v);
  }
  // EMU128's reductions start from the largest finite float, not infinity.
  lo = i > 0 ? hn::GetLane(hn::MinOfLanes(d, lane_lo)) : kInf;
  hi = i > 0 ? hn::GetLane(hn::MaxOfLanes(d, lane_hi)) : -kInf;
  for (; i < n; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
}

bool AllFiniteOf(const float* x, int64_t n) {
  // x * 0 is NaN exactly for NaN and +-Inf.
  const hn::ScalableTag<float> d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  const auto zero = hn::Zero(d);
  auto lane = zero;
  int64_t i = 0;
  for (; i + lanes <= n; i += lanes) lane = hn::Add(lane, hn::Mul(hn::LoadU(d, x + i), zero));
  float tail = 0;
  for (; i < n; ++i) tail += x[i] * 0.0f;
  return tail == 0.0f && hn::AllTrue(d, hn::Eq(lane, zero));
}

void RoundToHalfArray(const float* x, float* y, int64_t n) {
  const hn::ScalableTag<float> d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  int64_t i = 0;
  for (; i + lanes <= n; i += lanes) hn::StoreU(RoundToHalfLanes(d, hn::LoadU(d, x + i)), d, y + i);
  for (; i < n; ++i) y[i] = RoundToHalf(x[i]);
}

void AddErrorSumsOf(const float* x, const float* y, int64_t n, double& sse, double& sum_sq,
                    float& max_abs) {
  const hn::ScalableTag<double> dd;
  const hn::Rebind<float, decltype(dd)> df;  // As many floats as double lanes.
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(dd));
  auto sse0 = hn::Zero(dd), sse1 = sse0, sse2 = sse0, sse3 = sse0;
  auto sq0 = hn::Zero(dd), sq1 = sq0, sq2 = sq0, sq3 = sq0;
  auto amax = hn::Zero(df);
  // x^2 is exact in double, so a multiply-add rounds like multiply-then-add.
  auto add = [&](int64_t i, auto& sse_acc, auto& sq_acc) HWY_ATTR {
    const auto xf = hn::LoadU(df, x + i);
    const auto a = hn::PromoteTo(dd, xf);
    const auto e = hn::Sub(a, hn::PromoteTo(dd, hn::LoadU(df, y + i)));
    sse_acc = hn::MulAdd(e, e, sse_acc);
    sq_acc = hn::MulAdd(a, a, sq_acc);
    amax = MaxKeepingOrdered(amax, hn::Abs(xf));
  };
  int64_t i = 0;
  for (; i + 4 * lanes <= n; i += 4 * lanes) {
    add(i, sse0, sq0);
    add(i + lanes, sse1, sq1);
    add(i + 2 * lanes, sse2, sq2);
    add(i + 3 * lanes, sse3, sq3);
  }
  for (; i + lanes <= n; i += lanes) add(i, sse0, sq0);
  double tail_sse = 0, tail_sq = 0;
  float m = hn::GetLane(hn::MaxOfLanes(df, amax));
  for (; i < n; ++i) {
    const double a = x[i];
    const double e = a - static_cast<double>(y[i]);
    tail_sse += e * e;
    tail_sq += a * a;
    m = std::max(m, std::fabs(x[i]));
  }
  sse +=
      hn::GetLane(hn::SumOfLanes(dd, hn::Add(hn::Add(sse0, sse1), hn::Add(sse2, sse3)))) + tail_sse;
  sum_sq +=
      hn::GetLane(hn::SumOfLanes(dd, hn::Add(hn::Add(sq0, sq1), hn::Add(sq2, sq3)))) + tail_sq;
  max_abs = std::max(max_abs, m);
}

// Rows of whole vectors through HadamardRow (hadamard-inl.h), shorter rows
// through the plain loop.
void HadamardButterflyRows(float* x, int64_t rows, int n, float norm) {
  const hn::ScalableTag<float> d;
  const int lanes = static_cast<int>(hn::Lanes(d));
  for (int64_t r = 0; r < rows; ++r) {
    float* v = x + r * n;
    if (n >= lanes) {
      HadamardRow(d, v, n, norm);
      continue;
    }
    for (int h = 1; h < n; h *= 2) {
      for (int i = 0; i < n; i += 2 * h) {
        for (int j = i; j < i + h; ++j) {
          const float a = v[j], b = v[j + h];
          v[j] = a + b;
          v[j + h] = a - b;
        }
      }
    }
    for (int i = 0; i < n; ++i) v[i] *= norm;
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace kvq
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace kvq {

HWY_EXPORT(AbsMaxOf);
HWY_EXPORT(MinMaxOf);
HWY_EXPORT(AllFiniteOf);
HWY_EXPORT(RoundToHalfArray);
HWY_EXPORT(AddErrorSumsOf);
HWY_EXPORT(HadamardButterflyRows);

float AbsMaxOf(const float* x, int64_t n) { return HWY_DYNAMIC_DISPATCH(AbsMaxOf)(x, n); }

void MinMaxOf(const float* x, int64_t n, float& lo, float& hi) {
  HWY_DYNAMIC_DISPATCH(MinMaxOf)(x, n, lo, hi);
}

bool AllFiniteOf(const float* x, int64_t n) { return HWY_DYNAMIC_DISPATCH(AllFiniteOf)(x, n); }

void RoundToHalfArray(const float* x, float* y, int64_t n) {
  HWY_DYNAMIC_DISPATCH(RoundToHalfArray)(x, y, n);
}

void AddErrorSumsOf(const float* x, const float* y, int64_t n, double& sse, double& sum_sq,
                    float& max_abs) {
  HWY_DYNAMIC_DISPATCH(AddErrorSumsOf)(x, y, n, sse, sum_sq, max_abs);
}

void HadamardButterflyRows(float* x, int64_t rows, int n, float norm) {
  HWY_DYNAMIC_DISPATCH(HadamardButterflyRows)(x, rows, n, norm);
}

}  // namespace kvq
#endif
