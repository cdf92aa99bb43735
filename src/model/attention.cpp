#include "kvq/model/attention.h"

#include <cmath>
#include <vector>

#include "kvq/common/error.h"
#include "kvq/common/vmath.h"

namespace kvq {

void CausalAttention(const AttentionShape& shape, HeadsView q, HeadsView k, HeadsView v,
                     MutableHeadsView out) {
  KVQ_CHECK(shape.chunk_len > 0 && shape.tokens % shape.chunk_len == 0);
  KVQ_CHECK(shape.num_kv_heads > 0 && shape.num_heads % shape.num_kv_heads == 0);
  const int group = shape.num_heads / shape.num_kv_heads;
  const int D = shape.head_dim;
#pragma omp parallel
  {
    std::vector<float> scores(static_cast<size_t>(shape.chunk_len));
#pragma omp for collapse(2) schedule(dynamic, 16)
    for (int h = 0; h < shape.num_heads; ++h) {
      for (int64_t t = 0; t < shape.tokens; ++t) {
        const int kv = h / group;
        const int64_t start = t - t % shape.chunk_len;
        const float* qt = q.data + h * q.head_stride + t * q.token_stride;
        float max_score = -INFINITY;
        for (int64_t j = start; j <= t; ++j) {
          const float* kj = k.data + kv * k.head_stride + j * k.token_stride;
          float dot = 0;
          for (int d = 0; d < D; ++d) dot += qt[d] * kj[d];
          scores[static_cast<size_t>(j - start)] = dot * shape.scale;
          max_score = std::fmax(max_score, dot * shape.scale);
        }
        float sum = 0;
        for (int64_t j = start; j <= t; ++j) {
          float& s = scores[static_cast<size_t>(j - start)];
          s = FastExp(s - max_score);
          sum += s;
        }
        float* ot = out.data + h * out.head_stride + t * out.token_stride;
        for (int d = 0; d < D; ++d) ot[d] = 0;
        for (int64_t j = start; j <= t; ++j) {
          const float p = scores[static_cast<size_t>(j - start)] / sum;
          const float* vj = v.data + kv * v.head_stride + j * v.token_stride;
          for (int d = 0; d < D; ++d) ot[d] += p * vj[d];
        }
      }
    }
  }
}

}  // namespace kvq
