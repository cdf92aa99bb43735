#include "model/matvec.h"

#include <omp.h>

#include <cstring>

#include "kvq/common/error.h"
#include "kvq/common/half.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "model/matvec.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include "common/half-inl.h"
#include "common/simd-inl.h"

HWY_BEFORE_NAMESPACE();
namespace kvq {
namespace HWY_NAMESPACE {
namespace {

using D = hn::ScalableTag<float>;

// Lanes(d) weights from p, widened exactly: bf16 is the top half of a float.
template <DType kType>
HWY_INLINE hn::Vec<D> LoadWeights(D d, const uint8_t* p) {
  if constexpr (kType == DType::kF32) {
    // LoadU reads through a byte copy or an unaligned load on every target.
    return hn::LoadU(d, reinterpret_cast<const float*>(p));
  } else if constexpr (kType == DType::kF16) {
    return LoadHalfLanes(d, reinterpret_cast<const uint16_t*>(p));
  } else {
    const hn::Rebind<uint16_t, D> d16;
    const hn::RebindToUnsigned<D> du;
    const auto bits = hn::PromoteTo(du, hn::LoadU(d16, reinterpret_cast<const uint16_t*>(p)));
    return hn::BitCast(d, hn::ShiftLeft<16>(bits));
  }
}

template <DType kType>
float ScalarWeight(const uint8_t* p) {
  if constexpr (kType == DType::kF32) {
    float f;
    std::memcpy(&f, p, 4);
    return f;
  } else {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return kType == DType::kF16 ? HalfToFloat(h) : Bf16ToFloat(h);
  }
}

template <DType kType>
float RowDot(const uint8_t* row, const float* HWY_RESTRICT x, int64_t cols) {
  constexpr int64_t kBytes = kType == DType::kF32 ? 4 : 2;
  const D d;
  const auto N = static_cast<int64_t>(hn::Lanes(d));
  auto a0 = hn::Zero(d), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 4 * N <= cols; i += 4 * N) {
    a0 = hn::MulAdd(LoadWeights<kType>(d, row + i * kBytes), hn::LoadU(d, x + i), a0);
    a1 = hn::MulAdd(LoadWeights<kType>(d, row + (i + N) * kBytes), hn::LoadU(d, x + i + N), a1);
    a2 = hn::MulAdd(LoadWeights<kType>(d, row + (i + 2 * N) * kBytes), hn::LoadU(d, x + i + 2 * N),
                    a2);
    a3 = hn::MulAdd(LoadWeights<kType>(d, row + (i + 3 * N) * kBytes), hn::LoadU(d, x + i + 3 * N),
                    a3);
  }
  for (; i + N <= cols; i += N) {
    a0 = hn::MulAdd(LoadWeights<kType>(d, row + i * kBytes), hn::LoadU(d, x + i), a0);
  }
  float sum = hn::GetLane(hn::SumOfLanes(d, hn::Add(hn::Add(a0, a1), hn::Add(a2, a3))));
  for (; i < cols; ++i) sum += ScalarWeight<kType>(row + i * kBytes) * x[i];
  return sum;
}

template <DType kType>
void MatVecTyped(const uint8_t* w, int64_t rows, int64_t cols, const float* x, float* y,
                 bool accumulate) {
  constexpr int64_t kBytes = kType == DType::kF32 ? 4 : 2;
  // Contiguous row blocks per thread: each streams its own part of w.
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float dot = RowDot<kType>(w + r * cols * kBytes, x, cols);
    y[r] = accumulate ? y[r] + dot : dot;
  }
}

}  // namespace

void MatVec(DType dtype, const void* w, int64_t rows, int64_t cols, const float* x, float* y,
            bool accumulate) {
  const auto* bytes = static_cast<const uint8_t*>(w);
  switch (dtype) {
    case DType::kF32:
      return MatVecTyped<DType::kF32>(bytes, rows, cols, x, y, accumulate);
    case DType::kF16:
      return MatVecTyped<DType::kF16>(bytes, rows, cols, x, y, accumulate);
    default:
      return MatVecTyped<DType::kBF16>(bytes, rows, cols, x, y, accumulate);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace kvq
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace kvq {

HWY_EXPORT(MatVec);

void MatVec(DType dtype, const void* w, int64_t rows, int64_t cols, const float* x, float* y,
            bool accumulate) {
  KVQ_CHECK(dtype == DType::kF32 || dtype == DType::kF16 || dtype == DType::kBF16);
  KVQ_CHECK(rows >= 0 && cols >= 0 && (rows == 0 || (w != nullptr && y != nullptr)));
  HWY_DYNAMIC_DISPATCH(MatVec)(dtype, w, rows, cols, x, y, accumulate);
}

}  // namespace kvq
#endif
