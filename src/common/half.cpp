#include "kvq/common/half.h"

#include <cstring>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "common/half.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include "common/half-inl.h"

HWY_BEFORE_NAMESPACE();
namespace kvq {
namespace HWY_NAMESPACE {

namespace hn = hwy::HWY_NAMESPACE;

void HalfToFloatArray(const uint8_t* src, float* dst, int64_t n) {
  const hn::ScalableTag<float> df;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(df));
  int64_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    hn::StoreU(LoadHalfLanes(df, reinterpret_cast<const uint16_t*>(src + 2 * i)), df, dst + i);
  }
  for (; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);
    dst[i] = HalfToFloat(h);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace kvq
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace kvq {

HWY_EXPORT(HalfToFloatArray);

void HalfToFloatArray(const uint8_t* src, float* dst, int64_t n) {
  HWY_DYNAMIC_DISPATCH(HalfToFloatArray)(src, dst, n);
}

}  // namespace kvq
#endif
