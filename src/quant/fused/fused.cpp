#include "kvq/quant/fused.h"

#include "kvq/common/error.h"
#include "quant/fused/families.h"

namespace kvq {

bool HasFusedKernel(const FormatSpec& f, int head_dim) {
  if (f.hadamard || f.pre_rope || f.bias_aware || f.sink > 0 || f.recent > 0) return false;
  if (head_dim <= 0 || head_dim % 16 != 0) return false;
  switch (f.kind) {
    case FormatKind::kFp16:
    case FormatKind::kFp8E4M3:
    case FormatKind::kFp8E5M2:
    case FormatKind::kNvfp4:
      return true;
    case FormatKind::kQ8_0:
    case FormatKind::kQ4_0:
    case FormatKind::kQ4_1:
    case FormatKind::kIq4Nl:
      return head_dim % 32 == 0;
    case FormatKind::kInt:
      if (f.granularity == Granularity::kGroupDim)
        return f.group % 16 == 0 && head_dim % f.group == 0;
      return f.granularity != Granularity::kGroupToken || f.group > 0;
    default:
      return false;
  }
}

void FusedQuantizeHead(const FormatSpec& f, int64_t chunk_len, const uint16_t* x_half,
                       const float* x_float, int64_t tokens, int head_dim, const HeadStats* stats,
                       float* y, QdqErrorSums* sums) {
  KVQ_CHECK(HasFusedKernel(f, head_dim) && (x_half == nullptr) != (x_float == nullptr));
  const FusedCall call{f, chunk_len, x_half, x_float, tokens, head_dim, stats, y, sums};
  switch (f.kind) {
    case FormatKind::kInt:
      return FusedIntHead(call);
    case FormatKind::kFp16:
    case FormatKind::kFp8E4M3:
    case FormatKind::kFp8E5M2:
    case FormatKind::kNvfp4:
      return FusedFloatHead(call);
    default:
      return FusedGgmlHead(call);
  }
}

}  // namespace kvq
