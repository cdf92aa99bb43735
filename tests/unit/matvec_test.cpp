#include "model/matvec.h"

#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <cstring>
#include <vector>

#include "kvq/common/half.h"
#include "kvq/common/random.h"
#include "test_util.h"

namespace kvq {
namespace {

// Weights as the checkpoint stores them, and the float values they hold.
struct StoredMatrix {
  DType dtype;
  std::vector<uint8_t> bytes;
  std::vector<float> values;  // [rows, cols], widened by the scalar conversions.
};

// From float values; the caller picks values the dtype represents (or
// accepts their rounding: `values` holds what is stored).
StoredMatrix Store(DType dtype, const std::vector<float>& x, size_t offset) {
  StoredMatrix m{dtype, std::vector<uint8_t>(offset), {}};
  for (float f : x) {
    uint8_t b[4];
    if (dtype == DType::kF32) {
      std::memcpy(b, &f, 4);
      m.bytes.insert(m.bytes.end(), b, b + 4);
      m.values.push_back(f);
      continue;
    }
    const uint16_t h = dtype == DType::kF16 ? FloatToHalf(f) : FloatToBf16(f);
    std::memcpy(b, &h, 2);
    m.bytes.insert(m.bytes.end(), b, b + 2);
    m.values.push_back(dtype == DType::kF16 ? HalfToFloat(h) : Bf16ToFloat(h));
  }
  return m;
}

// Odd column counts exercise the vector tails; offset 1 misaligns every row.
constexpr int64_t kShapes[][2] = {{1, 1}, {3, 7}, {5, 64}, {17, 131}, {64, 896}, {2, 4864}};

// Small integers: every product and partial sum is an integer below 2^24,
// exact in float in any order, so the kernel equals the scalar sum exactly
// on every target.
TEST(MatVec, ExactOnIntegersOnEveryTarget) {
  test::ForEachSimdTarget([](const std::string&) {
    SplitMix64 rng(7);
    for (DType dtype : {DType::kBF16, DType::kF16, DType::kF32}) {
      for (const auto& shape : kShapes) {
        const int64_t rows = shape[0], cols = shape[1];
        std::vector<float> w(static_cast<size_t>(rows * cols)), x(static_cast<size_t>(cols));
        for (float& v : w) v = static_cast<float>(static_cast<int>(rng.Next() % 17) - 8);
        for (float& v : x) v = static_cast<float>(static_cast<int>(rng.Next() % 9) - 4);
        for (size_t offset : {size_t{0}, size_t{1}}) {
          const StoredMatrix m = Store(dtype, w, offset);
          std::vector<float> y(static_cast<size_t>(rows), 5.0f);
          MatVec(dtype, m.bytes.data() + offset, rows, cols, x.data(), y.data(), false);
          std::vector<float> acc(static_cast<size_t>(rows), 5.0f);
          MatVec(dtype, m.bytes.data() + offset, rows, cols, x.data(), acc.data(), true);
          for (int64_t r = 0; r < rows; ++r) {
            double expected = 0;
            for (int64_t i = 0; i < cols; ++i) {
              expected += static_cast<double>(m.values[static_cast<size_t>(r * cols + i)]) *
                          x[static_cast<size_t>(i)];
            }
            ASSERT_EQ(y[static_cast<size_t>(r)], expected) << rows << "x" << cols << " row " << r;
            ASSERT_EQ(acc[static_cast<size_t>(r)], expected + 5) << rows << "x" << cols;
          }
        }
      }
    }
  });
}

// Random values, every code path: within the float summation bound
// |y - sum| <= cols * FLT_EPSILON * sum |w_i x_i| of the double-precision
// scalar sum over the widened weights (a misread or misplaced weight moves y
// by about one |w_i x_i|, far outside it).
TEST(MatVec, MatchesScalarReferenceOnEveryTarget) {
  test::ForEachSimdTarget([](const std::string&) {
    SplitMix64 rng(11);
    for (DType dtype : {DType::kBF16, DType::kF16, DType::kF32}) {
      for (const auto& shape : kShapes) {
        const int64_t rows = shape[0], cols = shape[1];
        std::vector<float> w(static_cast<size_t>(rows * cols)), x(static_cast<size_t>(cols));
        for (float& v : w) v = static_cast<float>(rng.Uniform() * 2 - 1);
        for (float& v : x) v = static_cast<float>(rng.Uniform() * 8 - 4);
        const StoredMatrix m = Store(dtype, w, 1);
        std::vector<float> y(static_cast<size_t>(rows));
        MatVec(dtype, m.bytes.data() + 1, rows, cols, x.data(), y.data(), false);
        for (int64_t r = 0; r < rows; ++r) {
          double sum = 0, magnitude = 0;
          for (int64_t i = 0; i < cols; ++i) {
            const double p = static_cast<double>(m.values[static_cast<size_t>(r * cols + i)]) *
                             x[static_cast<size_t>(i)];
            sum += p;
            magnitude += std::abs(p);
          }
          ASSERT_LE(std::abs(y[static_cast<size_t>(r)] - sum),
                    static_cast<double>(cols) * FLT_EPSILON * magnitude)
              << rows << "x" << cols << " row " << r;
        }
      }
    }
  });
}

}  // namespace
}  // namespace kvq
