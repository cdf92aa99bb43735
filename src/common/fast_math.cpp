#include "kvq/common/fast_math.h"

#include <algorithm>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "common/fast_math.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include "common/simd-inl.h"

HWY_BEFORE_NAMESPACE();
namespace kvq {
namespace HWY_NAMESPACE {

void FastExpShifted(const float* x, float shift, float* y, int64_t n) {
  const hn::ScalableTag<float> d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  const auto s = hn::Set(d, shift);
  int64_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    hn::StoreU(FastExpLanes(d, hn::Sub(hn::LoadU(d, x + i), s)), d, y + i);
  }
  if (i < n) {
    HWY_ALIGN float buffer[hn::MaxLanes(d)] = {};
    std::copy(x + i, x + n, buffer);
    hn::Store(FastExpLanes(d, hn::Sub(hn::Load(d, buffer), s)), d, buffer);
    std::copy(buffer, buffer + (n - i), y + i);
  }
}

void SiluGate(float* gate, const float* up, int64_t n) {
  const hn::ScalableTag<float> d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  const auto one = hn::Set(d, 1.0f);
  auto silu_mul = [&](auto g, auto u) {
    return hn::Mul(hn::Div(g, hn::Add(one, FastExpLanes(d, hn::Neg(g)))), u);
  };
  int64_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    hn::StoreU(silu_mul(hn::LoadU(d, gate + i), hn::LoadU(d, up + i)), d, gate + i);
  }
  if (i < n) {
    HWY_ALIGN float g[hn::MaxLanes(d)] = {}, u[hn::MaxLanes(d)] = {};
    std::copy(gate + i, gate + n, g);
    std::copy(up + i, up + n, u);
    hn::Store(silu_mul(hn::Load(d, g), hn::Load(d, u)), d, g);
    std::copy(g, g + (n - i), gate + i);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace kvq
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace kvq {

HWY_EXPORT(FastExpShifted);
HWY_EXPORT(SiluGate);

void FastExpShifted(const float* x, float shift, float* y, int64_t n) {
  HWY_DYNAMIC_DISPATCH(FastExpShifted)(x, shift, y, n);
}

void SiluGate(float* gate, const float* up, int64_t n) {
  HWY_DYNAMIC_DISPATCH(SiluGate)(gate, up, n);
}

}  // namespace kvq
#endif
