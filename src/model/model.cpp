#include "kvq/model/model.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kvq/common/blas.h"
#include "kvq/common/error.h"
#include "kvq/common/fast_math.h"
#include "kvq/common/finite.h"
#include "kvq/model/attention.h"
#include "model/matvec.h"

namespace kvq {
namespace {

// Where one layer's weights sit in the float32 arena. q, k and v rows are
// stacked into one [(nh + 2 nkv) * hd, H] matrix and gate/up into one
// [2 I, H] matrix, so each is a single GEMM.
struct LayerLayout {
  size_t input_norm, qkv, qkv_bias, q_norm, k_norm, o, o_bias, post_norm, gate_up, gate_up_bias,
      down, down_bias, total;
};

LayerLayout MakeLayout(const ModelConfig& c) {
  const size_t H = static_cast<size_t>(c.hidden_size);
  const size_t D = static_cast<size_t>(c.head_dim);
  const size_t qkv_rows = static_cast<size_t>(c.num_heads + 2 * c.num_kv_heads) * D;
  const size_t attn_width = static_cast<size_t>(c.num_heads) * D;
  const size_t I = static_cast<size_t>(c.intermediate_size);
  LayerLayout l{};
  size_t at = 0;
  auto take = [&at](size_t n) {
    const size_t begin = at;
    at += (n + 15) & ~size_t{15};  // 64-byte aligned sub-blocks.
    return begin;
  };
  l.input_norm = take(H);
  l.qkv = take(qkv_rows * H);
  l.qkv_bias = take(c.qkv_bias ? qkv_rows : 0);
  l.q_norm = take(c.qk_norm ? D : 0);
  l.k_norm = take(c.qk_norm ? D : 0);
  l.o = take(H * attn_width);
  l.o_bias = take(c.o_bias ? H : 0);
  l.post_norm = take(H);
  l.gate_up = take(2 * I * H);
  l.gate_up_bias = take(c.mlp_bias ? 2 * I : 0);
  l.down = take(H * I);
  l.down_bias = take(c.mlp_bias ? H : 0);
  l.total = at;
  return l;
}

std::string LayerName(int layer, const char* suffix) {
  return fmt::format("model.layers.{}.{}", layer, suffix);
}

const TensorView& Checked(const TensorStore& store, const std::string& name,
                          std::vector<int64_t> shape) {
  const TensorView& t = store.Get(name);
  if (t.shape != shape) {
    ThrowInput("{}: tensor '{}' has shape {}, config.json implies [{}]", store.dir().string(), name,
               t.ShapeString(), fmt::join(shape, ", "));
  }
  if (t.dtype != DType::kF32 && t.dtype != DType::kF16 && t.dtype != DType::kBF16) {
    ThrowInput("{}: tensor '{}' has dtype {}; weights must be F32, F16 or BF16",
               store.dir().string(), name, DTypeName(t.dtype));
  }
  return t;
}

// A weight that holds NaN or Inf: InputError naming the folder, the tensor
// and the first bad element (the checkpoint is broken, not the run).
[[noreturn]] void ThrowNonFiniteWeight(const std::filesystem::path& dir, const TensorView& t,
                                       int64_t index, float value) {
  const int64_t row_length = t.shape.empty() ? 1 : t.shape.back();
  ThrowInput("{}: tensor '{}' holds {} at element {} (row {}, column {}); the checkpoint is broken",
             dir.string(), t.name, value, index, index / row_length, index % row_length);
}

// Widens a tensor into dst in parallel slices, checking that every value is
// finite (the scan runs on the slice just written, still in cache).
void Widen(const std::filesystem::path& dir, const TensorView& t, float* dst) {
  const int64_t n = t.numel();
  constexpr int64_t kSlice = 1 << 16;
  const int64_t slices = (n + kSlice - 1) / kSlice;
  int64_t first_bad = n;
#pragma omp parallel for schedule(static) reduction(min : first_bad)
  for (int64_t s = 0; s < slices; ++s) {
    const int64_t begin = s * kSlice;
    const int64_t count = std::min(kSlice, n - begin);
    t.ToFloat(dst + begin, begin, count);
    const int64_t bad = FirstNonFinite(dst + begin, count);
    if (bad < count) first_bad = std::min(first_bad, begin + bad);
  }
  if (first_bad < n) ThrowNonFiniteWeight(dir, t, first_bad, dst[first_bad]);
}

// Scans a stored tensor for NaN and Inf without keeping a float32 copy:
// slices are widened into a per-thread buffer (decode reads the stored
// values directly, so they are checked once, not widened).
void CheckFinite(const std::filesystem::path& dir, const TensorView& t) {
  const int64_t n = t.numel();
  constexpr int64_t kSlice = 1 << 14;
  const int64_t slices = (n + kSlice - 1) / kSlice;
  int64_t first_bad = n;
#pragma omp parallel for schedule(static) reduction(min : first_bad)
  for (int64_t s = 0; s < slices; ++s) {
    thread_local std::vector<float> buffer(kSlice);
    const int64_t begin = s * kSlice;
    const int64_t count = std::min(kSlice, n - begin);
    t.ToFloat(buffer.data(), begin, count);
    const int64_t bad = FirstNonFinite(buffer.data(), count);
    if (bad < count) first_bad = std::min(first_bad, begin + bad);
  }
  if (first_bad < n) {
    float value = 0;
    t.ToFloat(&value, first_bad, 1);
    ThrowNonFiniteWeight(dir, t, first_bad, value);
  }
}

// The residual stream x [tokens, hidden] after `layer`: RuntimeError naming
// the layer, the first token (and its prompt position) and the value when
// one is NaN or Inf, so that a numerical breakdown never flows on silently.
void CheckResidual(const float* x, int64_t tokens, int64_t hidden, int64_t chunk_len, int layer) {
  int64_t first_bad = tokens * hidden;
#pragma omp parallel for schedule(static) reduction(min : first_bad) if (tokens > 1)
  for (int64_t t = 0; t < tokens; ++t) {
    const int64_t bad = FirstNonFinite(x + t * hidden, hidden);
    if (bad < hidden) first_bad = std::min(first_bad, t * hidden + bad);
  }
  if (first_bad == tokens * hidden) return;
  const int64_t token = first_bad / hidden;
  ThrowRuntime(
      "layer {}: the residual stream holds {} at token {} (prompt {}, position {}), hidden index "
      "{}",
      layer, x[first_bad], token, token / chunk_len, token % chunk_len, first_bad % hidden);
}

// The row loops below run serially for one row (a decode step): a parallel
// region per call would cost more than the row, hundreds of times a token.

// out[t] = weight * x[t] / sqrt(mean(x[t]^2) + eps), rows of width n.
void RmsNorm(const float* x, const float* weight, int64_t rows, int64_t n, int64_t stride,
             double eps, float* out, int64_t out_stride) {
#pragma omp parallel for schedule(static) if (rows > 1)
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * stride;
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(row[i]) * row[i];
    const auto variance = static_cast<float>(sum / static_cast<double>(n));
    const float inv_rms = 1.0f / std::sqrt(variance + static_cast<float>(eps));
    float* dst = out + r * out_stride;
    for (int64_t i = 0; i < n; ++i) dst[i] = weight[i] * (row[i] * inv_rms);
  }
}

// y[rows, out] (+)= x[rows, in] . W[out, in]^T
void Linear(const float* x, int64_t rows, int64_t in, int64_t lda, const float* w, int64_t out,
            float* y, int64_t ldy, bool accumulate) {
  if (rows == 1) {
    // A decode step: sgemm would pack the whole weight matrix for one row.
    cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<blasint>(out), static_cast<blasint>(in),
                1.0f, w, static_cast<blasint>(in), x, 1, accumulate ? 1.0f : 0.0f, y, 1);
    return;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<blasint>(rows),
              static_cast<blasint>(out), static_cast<blasint>(in), 1.0f, x,
              static_cast<blasint>(lda), w, static_cast<blasint>(in), accumulate ? 1.0f : 0.0f, y,
              static_cast<blasint>(ldy));
}

void AddBias(float* y, const float* bias, int64_t rows, int64_t n, int64_t stride) {
#pragma omp parallel for schedule(static) if (rows > 1)
  for (int64_t r = 0; r < rows; ++r) {
    float* row = y + r * stride;
    for (int64_t i = 0; i < n; ++i) row[i] += bias[i];
  }
}

}  // namespace

// Rows per block of the projections and the MLP: their intermediates (h,
// qkv, gate_up) are [kRowBlock, width] whatever the token count, so only the
// residual stream, q, k, v and attn grow with the context (docs/long-context.md).
// 512 rows keep the GEMMs at full speed.
constexpr int64_t kRowBlock = 512;

struct Model::Scratch {
  LayerLayout layout;
  HugeVector<float> weights;
  std::vector<bool> decode_checked;  // Per layer: its stored matrices were scanned once.
  int64_t tokens = 0;
  HugeVector<float> x, q, k, v, attn;  // [tokens, width]
  HugeVector<float> h, qkv, gate_up;   // [min(tokens, kRowBlock), width]
  std::unique_ptr<RopeTable> rope;
  int64_t rope_positions = 0;

  void Reserve(const ModelConfig& c, int64_t t) {
    if (t <= tokens) return;
    tokens = t;
    const auto T = static_cast<size_t>(t);
    const auto B = static_cast<size_t>(std::min(t, kRowBlock));
    const auto H = static_cast<size_t>(c.hidden_size);
    const auto D = static_cast<size_t>(c.head_dim);
    x.resize(T * H);
    q.resize(T * static_cast<size_t>(c.num_heads) * D);
    k.resize(T * static_cast<size_t>(c.num_kv_heads) * D);
    v.resize(k.size());
    attn.resize(q.size());
    h.resize(B * H);
    qkv.resize(B * static_cast<size_t>(c.num_heads + 2 * c.num_kv_heads) * D);
    gate_up.resize(B * 2 * static_cast<size_t>(c.intermediate_size));
  }

  size_t Bytes() const {
    size_t floats = weights.size() + x.size() + q.size() + k.size() + v.size() + attn.size() +
                    h.size() + qkv.size() + gate_up.size();
    if (rope) floats += rope->cos.size() + rope->sin.size();
    return floats * sizeof(float);
  }
};

Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;
Model::~Model() = default;

Model Model::Load(const std::filesystem::path& dir) {
  if (!std::filesystem::is_directory(dir)) {
    ThrowInput("{}: not a model folder (expected config.json and safetensors weights)",
               dir.string());
  }
  EnsureBlasKernel();
  Model model;
  model.config_ = ModelConfig::Load(dir / "config.json");
  model.store_ = TensorStore::Open(dir);
  const ModelConfig& c = model.config_;
  const int64_t H = c.hidden_size, D = c.head_dim, I = c.intermediate_size;
  const int64_t nq = c.num_heads * D, nkv = c.num_kv_heads * D;
  const TensorStore& s = model.store_;
  Checked(s, "model.embed_tokens.weight", {c.vocab_size, H});
  Checked(s, "model.norm.weight", {H});
  if (!c.tie_word_embeddings) Checked(s, "lm_head.weight", {c.vocab_size, H});
  for (int l = 0; l < c.num_layers; ++l) {
    Checked(s, LayerName(l, "input_layernorm.weight"), {H});
    Checked(s, LayerName(l, "self_attn.q_proj.weight"), {nq, H});
    Checked(s, LayerName(l, "self_attn.k_proj.weight"), {nkv, H});
    Checked(s, LayerName(l, "self_attn.v_proj.weight"), {nkv, H});
    Checked(s, LayerName(l, "self_attn.o_proj.weight"), {H, nq});
    if (c.qkv_bias) {
      Checked(s, LayerName(l, "self_attn.q_proj.bias"), {nq});
      Checked(s, LayerName(l, "self_attn.k_proj.bias"), {nkv});
      Checked(s, LayerName(l, "self_attn.v_proj.bias"), {nkv});
    }
    if (c.o_bias) Checked(s, LayerName(l, "self_attn.o_proj.bias"), {H});
    if (c.qk_norm) {
      Checked(s, LayerName(l, "self_attn.q_norm.weight"), {D});
      Checked(s, LayerName(l, "self_attn.k_norm.weight"), {D});
    }
    Checked(s, LayerName(l, "post_attention_layernorm.weight"), {H});
    Checked(s, LayerName(l, "mlp.gate_proj.weight"), {I, H});
    Checked(s, LayerName(l, "mlp.up_proj.weight"), {I, H});
    Checked(s, LayerName(l, "mlp.down_proj.weight"), {H, I});
    if (c.mlp_bias) {
      Checked(s, LayerName(l, "mlp.gate_proj.bias"), {I});
      Checked(s, LayerName(l, "mlp.up_proj.bias"), {I});
      Checked(s, LayerName(l, "mlp.down_proj.bias"), {H});
    }
  }
  model.scratch_ = std::make_unique<Scratch>();
  model.scratch_->layout = MakeLayout(c);
  return model;
}

void Model::Forward(std::span<const int32_t> ids, int64_t chunk_len, LayerHook* hook,
                    std::vector<float>* final_hidden, const std::function<void(int)>& progress) {
  Run(ids, chunk_len, 0, hook, nullptr, final_hidden, progress);
}

void Model::ForwardAt(std::span<const int32_t> ids, int64_t position, CachedAttention& attention,
                      std::vector<float>* final_hidden) {
  KVQ_CHECK(position >= 0);
  Run(ids, static_cast<int64_t>(ids.size()), position, nullptr, &attention, final_hidden, {});
}

void Model::Run(std::span<const int32_t> ids, int64_t chunk_len, int64_t position, LayerHook* hook,
                CachedAttention* cached, std::vector<float>* final_hidden,
                const std::function<void(int)>& progress) {
  const ModelConfig& c = config_;
  const auto T = static_cast<int64_t>(ids.size());
  KVQ_CHECK(T > 0 && chunk_len > 0 && T % chunk_len == 0);
  const int64_t H = c.hidden_size, D = c.head_dim, I = c.intermediate_size;
  const int64_t nq = c.num_heads * D, nkv = c.num_kv_heads * D, qkv_width = nq + 2 * nkv;
  // RoPE beyond the trained context gives numbers but not the model's.
  c.CheckPositions(position + chunk_len,
                   position > 0 ? "generate fewer tokens (--max-new-tokens) or use a shorter prompt"
                                : "use shorter prompts (--chunk-len, --tokens)");
  Scratch& s = *scratch_;
  s.Reserve(c, T);
  if (s.weights.empty()) s.weights.resize(s.layout.total);
  if (s.rope_positions < position + chunk_len) {
    // Decoding grows the table in doubling steps, not by one position a token.
    const int64_t positions =
        std::max(position + chunk_len, position > 0 ? 2 * s.rope_positions : 0);
    s.rope = std::make_unique<RopeTable>(c.rope, c.head_dim, positions);
    s.rope_positions = positions;
  }

  const TensorView& embed = store_.Get("model.embed_tokens.weight");
  for (int64_t t = 0; t < T; ++t) {
    if (ids[static_cast<size_t>(t)] < 0 || ids[static_cast<size_t>(t)] >= c.vocab_size) {
      ThrowInput("token {} has id {}, outside the model's vocabulary [0, {})", t,
                 ids[static_cast<size_t>(t)], c.vocab_size);
    }
  }
#pragma omp parallel for schedule(static) if (T > 1)
  for (int64_t t = 0; t < T; ++t) {
    embed.ToFloat(s.x.data() + t * H, int64_t{ids[static_cast<size_t>(t)]} * H, H);
  }
  for (int64_t t = 0; t < T; ++t) {
    const int64_t bad = FirstNonFinite(s.x.data() + t * H, H);
    if (bad < H) {
      ThrowNonFiniteWeight(dir(), embed, int64_t{ids[static_cast<size_t>(t)]} * H + bad,
                           s.x[static_cast<size_t>(t * H + bad)]);
    }
  }

  const LayerLayout& L = s.layout;
  float* w = s.weights.data();
  if (cached && s.decode_checked.empty()) {
    s.decode_checked.assign(static_cast<size_t>(c.num_layers), false);
  }
  for (int layer = 0; layer < c.num_layers; ++layer) {
    // Norms and biases are widened into the arena each time (a few thousand
    // values). The matrices are widened for the forward pass's GEMMs; a
    // decode step (cached) reads them as stored instead (MatVec), after a
    // one-time scan for NaN and Inf.
    const bool check_matrices = cached && !s.decode_checked[static_cast<size_t>(layer)];
    auto widen = [&](const char* name, size_t offset) {
      Widen(dir(), store_.Get(LayerName(layer, name)), w + offset);
    };
    auto widen_matrix = [&](const char* name, size_t offset) {
      if (!cached) {
        widen(name, offset);
      } else if (check_matrices) {
        CheckFinite(dir(), store_.Get(LayerName(layer, name)));
      }
    };
    widen("input_layernorm.weight", L.input_norm);
    widen_matrix("self_attn.q_proj.weight", L.qkv);
    widen_matrix("self_attn.k_proj.weight", L.qkv + static_cast<size_t>(nq * H));
    widen_matrix("self_attn.v_proj.weight", L.qkv + static_cast<size_t>((nq + nkv) * H));
    if (c.qkv_bias) {
      widen("self_attn.q_proj.bias", L.qkv_bias);
      widen("self_attn.k_proj.bias", L.qkv_bias + static_cast<size_t>(nq));
      widen("self_attn.v_proj.bias", L.qkv_bias + static_cast<size_t>(nq + nkv));
    }
    if (c.qk_norm) {
      widen("self_attn.q_norm.weight", L.q_norm);
      widen("self_attn.k_norm.weight", L.k_norm);
    }
    widen_matrix("self_attn.o_proj.weight", L.o);
    if (c.o_bias) widen("self_attn.o_proj.bias", L.o_bias);
    widen("post_attention_layernorm.weight", L.post_norm);
    widen_matrix("mlp.gate_proj.weight", L.gate_up);
    widen_matrix("mlp.up_proj.weight", L.gate_up + static_cast<size_t>(I * H));
    widen_matrix("mlp.down_proj.weight", L.down);
    if (c.mlp_bias) {
      widen("mlp.gate_proj.bias", L.gate_up_bias);
      widen("mlp.up_proj.bias", L.gate_up_bias + static_cast<size_t>(I));
      widen("mlp.down_proj.bias", L.down_bias);
    }
    if (check_matrices) s.decode_checked[static_cast<size_t>(layer)] = true;

    // y[rows, out] (+)= x[rows, in] . W^T, W the arena block at `offset`
    // (forward pass) or the stored tensors `names` stacked along the output
    // rows (decode: one matrix-vector product per row and tensor).
    auto project = [&](const float* in, int64_t rows, int64_t in_width, int64_t lda, size_t offset,
                       std::initializer_list<const char*> names, int64_t out_width, float* y,
                       int64_t ldy, bool accumulate) {
      if (!cached) {
        Linear(in, rows, in_width, lda, w + offset, out_width, y, ldy, accumulate);
        return;
      }
      for (int64_t r = 0; r < rows; ++r) {
        int64_t first_row = 0;
        for (const char* name : names) {
          const TensorView& t = store_.Get(LayerName(layer, name));
          MatVec(t.dtype, t.data, t.shape[0], in_width, in + r * lda, y + r * ldy + first_row,
                 accumulate);
          first_row += t.shape[0];
        }
        KVQ_CHECK(first_row == out_width);
      }
    };

    // Attention block: q, k, v of every token (attention needs them all),
    // projected in blocks of kRowBlock rows.
    for (int64_t r0 = 0; r0 < T; r0 += kRowBlock) {
      const int64_t rows = std::min(kRowBlock, T - r0);
      RmsNorm(s.x.data() + r0 * H, w + L.input_norm, rows, H, H, c.rms_norm_eps, s.h.data(), H);
      project(s.h.data(), rows, H, H, L.qkv,
              {"self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight"},
              qkv_width, s.qkv.data(), qkv_width, false);
      if (c.qkv_bias) AddBias(s.qkv.data(), w + L.qkv_bias, rows, qkv_width, qkv_width);
#pragma omp parallel for schedule(static) if (rows > 1)
      for (int64_t i = 0; i < rows; ++i) {
        const float* row = s.qkv.data() + i * qkv_width;
        const int64_t t = r0 + i;
        std::memcpy(s.q.data() + t * nq, row, static_cast<size_t>(nq) * 4);
        std::memcpy(s.k.data() + t * nkv, row + nq, static_cast<size_t>(nkv) * 4);
        std::memcpy(s.v.data() + t * nkv, row + nq + nkv, static_cast<size_t>(nkv) * 4);
      }
    }
    if (c.qk_norm) {
      RmsNorm(s.q.data(), w + L.q_norm, T * c.num_heads, D, D, c.rms_norm_eps, s.q.data(), D);
      RmsNorm(s.k.data(), w + L.k_norm, T * c.num_kv_heads, D, D, c.rms_norm_eps, s.k.data(), D);
    }
    const int64_t chunks = T / chunk_len;
#pragma omp parallel for collapse(2) schedule(static) if (T > 1)
    for (int64_t chunk = 0; chunk < chunks; ++chunk) {
      for (int head = 0; head < c.num_heads + c.num_kv_heads; ++head) {
        float* base = head < c.num_heads
                          ? s.q.data() + chunk * chunk_len * nq + head * D
                          : s.k.data() + chunk * chunk_len * nkv + (head - c.num_heads) * D;
        ApplyRope(*s.rope, base, chunk_len, head < c.num_heads ? nq : nkv, position);
      }
    }
    LayerKV kv{layer,
               T,
               chunk_len,
               s.q.data(),
               s.k.data(),
               s.v.data(),
               c.qkv_bias ? w + L.qkv_bias + nq : nullptr};
    if (hook) hook->OnKV(kv);
    if (cached) {
      cached->Attend(kv, position, s.attn.data());
    } else {
      const AttentionShape shape{c.num_heads, c.num_kv_heads,
                                 c.head_dim,  T,
                                 chunk_len,   1.0f / std::sqrt(static_cast<float>(D))};
      CausalAttention(shape, {s.q.data(), D, nq}, {s.k.data(), D, nkv}, {s.v.data(), D, nkv},
                      {s.attn.data(), D, nq});
    }

    // o_proj and the MLP, in blocks of kRowBlock rows: rows of gate_up are
    // [gate (I) | up (I)]; the activation silu(gate) * up overwrites the
    // gate half, which down_proj then reads with a row stride of 2 I.
    for (int64_t r0 = 0; r0 < T; r0 += kRowBlock) {
      const int64_t rows = std::min(kRowBlock, T - r0);
      float* x = s.x.data() + r0 * H;
      project(s.attn.data() + r0 * nq, rows, nq, nq, L.o, {"self_attn.o_proj.weight"}, H, x, H,
              true);
      if (c.o_bias) AddBias(x, w + L.o_bias, rows, H, H);
      RmsNorm(x, w + L.post_norm, rows, H, H, c.rms_norm_eps, s.h.data(), H);
      project(s.h.data(), rows, H, H, L.gate_up, {"mlp.gate_proj.weight", "mlp.up_proj.weight"},
              2 * I, s.gate_up.data(), 2 * I, false);
      if (c.mlp_bias) AddBias(s.gate_up.data(), w + L.gate_up_bias, rows, 2 * I, 2 * I);
#pragma omp parallel for schedule(static) if (rows > 1)
      for (int64_t i = 0; i < rows; ++i) {
        float* row = s.gate_up.data() + i * 2 * I;
        SiluGate(row, row + I, I);
      }
      project(s.gate_up.data(), rows, I, 2 * I, L.down, {"mlp.down_proj.weight"}, H, x, H, true);
      if (c.mlp_bias) AddBias(x, w + L.down_bias, rows, H, H);
    }

    CheckResidual(s.x.data(), T, H, chunk_len, layer);
    if (hook) hook->OnOutputs({layer, T, s.attn.data(), s.x.data()});
    if (progress) progress(layer + 1);
  }

  if (final_hidden) {
    std::vector<float> norm(static_cast<size_t>(H));
    Widen(dir(), store_.Get("model.norm.weight"), norm.data());
    final_hidden->resize(static_cast<size_t>(T * H));
    RmsNorm(s.x.data(), norm.data(), T, H, H, c.rms_norm_eps, final_hidden->data(), H);
  }
}

void Model::Logits(const float* hidden, int64_t rows, float* logits) {
  const ModelConfig& c = config_;
  const TensorView& head =
      store_.Get(c.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight");
  if (rows == 1) {
    // A decode step: the stored head is read as it is (half the bytes of a
    // float32 copy for bf16 and f16), after a one-time scan.
    if (!lm_head_checked_) {
      CheckFinite(dir(), head);
      lm_head_checked_ = true;
    }
    MatVec(head.dtype, head.data, c.vocab_size, c.hidden_size, hidden, logits, false);
    return;
  }
  const float* w = nullptr;
  // An F32 head is used in place when the file keeps it float-aligned.
  if (head.dtype == DType::kF32 && reinterpret_cast<uintptr_t>(head.data) % alignof(float) == 0) {
    w = reinterpret_cast<const float*>(head.data);
    if (!lm_head_checked_) {
      CheckFinite(dir(), head);
      lm_head_checked_ = true;
    }
  } else {
    if (lm_head_.empty()) {
      lm_head_.resize(static_cast<size_t>(head.numel()));
      Widen(dir(), head, lm_head_.data());
    }
    w = lm_head_.data();
  }
  Linear(hidden, rows, c.hidden_size, c.hidden_size, w, c.vocab_size, logits, c.vocab_size, false);
}

size_t Model::ScratchBytes() const { return scratch_->Bytes(); }

}  // namespace kvq
