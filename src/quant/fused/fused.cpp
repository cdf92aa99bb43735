#include "kvq/quant/fused.h"

#include "kvq/common/error.h"
#include "quant/fused/families.h"

namespace kvq {

bool HasFusedKernel(const FormatSpec& f, int head_dim) {
  if (f.pre_rope || f.bias_aware || f.sink > 0 || f.recent > 0) return false;
  // The rotation is fused for per-token int formats (quant/fused/int.cpp).
  const bool power_of_two = (head_dim & (head_dim - 1)) == 0;
  if (f.hadamard && !(f.kind == FormatKind::kInt && f.granularity == Granularity::kToken &&
                      power_of_two && head_dim <= kMaxFusedHadamardDim)) {
    return false;
  }
  // The loops take vectors of up to 16 lanes (loops-inl.h): every block
  // along head_dim is one value or a multiple of 16 values.
  const int block = f.HeadDimBlock();
  return Traits(f.kind).fused != nullptr && head_dim > 0 && head_dim % 16 == 0 &&
         head_dim % block == 0 && (block == 1 || block % 16 == 0);
}

void FusedQuantizeHead(const FormatSpec& f, int64_t chunk_len, const uint16_t* x_half,
                       const float* x_float, int64_t tokens, int head_dim, const HeadStats* stats,
                       float* y, QdqErrorSums* sums) {
  KVQ_CHECK(HasFusedKernel(f, head_dim) && (x_half == nullptr) != (x_float == nullptr) &&
            (y == nullptr) != (sums == nullptr) && (y == nullptr || x_float != nullptr));
  Traits(f.kind).fused({f, chunk_len, x_half, x_float, tokens, head_dim, stats, y, sums});
}

}  // namespace kvq
