#include "scalar_forward.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "bench_common.h"
#include "kvq/common/error.h"
#include "kvq/metrics/perplexity.h"
#include "kvq/model/config.h"
#include "kvq/model/rope.h"
#include "kvq/model/safetensors.h"

namespace kvq::bench {
namespace {

using Vector = std::vector<double>;

std::vector<float> Widen(const TensorStore& store, const std::string& name) {
  const TensorView& tensor = store.Get(name);
  std::vector<float> values(static_cast<size_t>(tensor.numel()));
  tensor.ToFloat(values);
  return values;
}

// Four partial sums, so that the additions do not wait on one another.
double Dot(const float* w, const double* x, int64_t n) {
  double sums[4] = {0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    for (int j = 0; j < 4; ++j) sums[j] += static_cast<double>(w[i + j]) * x[i + j];
  }
  for (; i < n; ++i) sums[0] += static_cast<double>(w[i]) * x[i];
  return (sums[0] + sums[1]) + (sums[2] + sums[3]);
}

// y = W x (+ bias): W [rows, x.size()] row-major.
Vector MatVec(const std::vector<float>& w, const Vector& x, const std::vector<float>* bias) {
  const auto cols = static_cast<int64_t>(x.size());
  Vector y(w.size() / x.size());
  for (size_t r = 0; r < y.size(); ++r) {
    y[r] = Dot(w.data() + static_cast<int64_t>(r) * cols, x.data(), cols);
    if (bias != nullptr) y[r] += (*bias)[r];
  }
  return y;
}

// x / sqrt(mean(x^2) + eps) * weight, over each of the x.size() / n rows of n.
Vector RmsNorm(const Vector& x, const std::vector<float>& weight, double eps) {
  const size_t n = weight.size();
  Vector y(x.size());
  for (size_t row = 0; row < x.size(); row += n) {
    double sum = 0;
    for (size_t i = 0; i < n; ++i) sum += x[row + i] * x[row + i];
    const double inv_rms = 1 / std::sqrt(sum / static_cast<double>(n) + eps);
    for (size_t i = 0; i < n; ++i) y[row + i] = x[row + i] * inv_rms * weight[i];
  }
  return y;
}

// Rotate-half RoPE at `position` on each head of x [heads * head_dim].
void Rope(Vector& x, int head_dim, const std::vector<float>& inv_freq, int64_t position) {
  const size_t half = inv_freq.size();
  for (size_t head = 0; head < x.size(); head += static_cast<size_t>(head_dim)) {
    for (size_t i = 0; i < half; ++i) {
      const double angle = static_cast<float>(position) * inv_freq[i];  // float32, as transformers.
      const double a = x[head + i], b = x[head + i + half];
      x[head + i] = a * std::cos(angle) - b * std::sin(angle);
      x[head + i + half] = b * std::cos(angle) + a * std::sin(angle);
    }
  }
}

struct LayerWeights {
  std::vector<float> input_norm, q, k, v, q_bias, k_bias, v_bias, q_norm, k_norm, o, o_bias,
      post_norm, gate, up, down, gate_bias, up_bias, down_bias;
};

// Absent weights (a bias or norm the architecture does not have) stay empty.
LayerWeights LoadLayer(const TensorStore& store, const ModelConfig& c, int layer) {
  const std::string prefix = "model.layers." + std::to_string(layer) + ".";
  auto load = [&](const char* name, bool present = true) {
    return present ? Widen(store, prefix + name) : std::vector<float>{};
  };
  return {.input_norm = load("input_layernorm.weight"),
          .q = load("self_attn.q_proj.weight"),
          .k = load("self_attn.k_proj.weight"),
          .v = load("self_attn.v_proj.weight"),
          .q_bias = load("self_attn.q_proj.bias", c.qkv_bias),
          .k_bias = load("self_attn.k_proj.bias", c.qkv_bias),
          .v_bias = load("self_attn.v_proj.bias", c.qkv_bias),
          .q_norm = load("self_attn.q_norm.weight", c.qk_norm),
          .k_norm = load("self_attn.k_norm.weight", c.qk_norm),
          .o = load("self_attn.o_proj.weight"),
          .o_bias = load("self_attn.o_proj.bias", c.o_bias),
          .post_norm = load("post_attention_layernorm.weight"),
          .gate = load("mlp.gate_proj.weight"),
          .up = load("mlp.up_proj.weight"),
          .down = load("mlp.down_proj.weight"),
          .gate_bias = load("mlp.gate_proj.bias", c.mlp_bias),
          .up_bias = load("mlp.up_proj.bias", c.mlp_bias),
          .down_bias = load("mlp.down_proj.bias", c.mlp_bias)};
}

const std::vector<float>* Bias(const std::vector<float>& bias) {
  return bias.empty() ? nullptr : &bias;
}

// One layer's k or v of the history's prompt at positions [0, count):
// [kv_heads, count, head_dim].
std::vector<float> HistoryRows(const DumpHistory& history, int layer, bool keys, int64_t count) {
  const DumpInfo& info = history.dump->info();
  std::vector<float> all(static_cast<size_t>(info.num_kv_heads * info.tokens * info.head_dim));
  if (keys) {
    history.dump->ReadK(layer, all);
  } else {
    history.dump->ReadV(layer, all);
  }
  std::vector<float> rows(static_cast<size_t>(info.num_kv_heads * count * info.head_dim));
  for (int64_t g = 0; g < info.num_kv_heads; ++g) {
    const auto from = all.begin() + (g * info.tokens + history.first_token) * info.head_dim;
    std::copy(from, from + count * info.head_dim, rows.begin() + g * count * info.head_dim);
  }
  return rows;
}

}  // namespace

double AttentionErrorVsScalar(const LayerReference& ref, int head, int64_t token) {
  const AttentionShape& shape = ref.shape;
  const int64_t per_head = shape.tokens * shape.head_dim;
  const int64_t first = token - token % shape.chunk_len;
  const int64_t kv_offset = head / (shape.num_heads / shape.num_kv_heads) * per_head;
  const float* got = ref.out.data() + head * per_head + token * shape.head_dim;
  const std::vector<double> expected =
      ScalarAttention(ref.q.data() + head * per_head + token * shape.head_dim,
                      ref.k.data() + kv_offset + first * shape.head_dim,
                      ref.v.data() + kv_offset + first * shape.head_dim, token - first + 1,
                      shape.head_dim, shape.scale);
  double largest = 0, worst = 0;
  for (size_t c = 0; c < expected.size(); ++c) {
    largest = std::max(largest, std::fabs(expected[c]));
    worst = std::max(worst, std::fabs(expected[c] - got[c]));
  }
  return worst / std::max(largest, 1.0);
}

std::vector<ScalarToken> ScalarForward(const std::filesystem::path& model_dir,
                                       std::span<const int32_t> prompt,
                                       std::span<const int64_t> positions,
                                       const DumpHistory& history, bool with_logits) {
  const ModelConfig c = ModelConfig::Load(model_dir / "config.json");
  const TensorStore store = TensorStore::Open(model_dir);
  const int H = c.hidden_size, D = c.head_dim, group = c.group_size();
  const auto n = positions.size();
  const auto prompt_tokens = static_cast<int64_t>(prompt.size());
  KVQ_CHECK(std::is_sorted(positions.begin(), positions.end()) && n > 0 &&
            positions.back() < prompt_tokens);
  const bool needs_history = positions.back() + 1 != static_cast<int64_t>(n);
  KVQ_CHECK(!needs_history || history.dump != nullptr);
  if (history.dump != nullptr) {  // The dump must be of this model's geometry.
    const DumpInfo& info = history.dump->info();
    KVQ_CHECK(info.num_layers == c.num_layers && info.num_heads == c.num_heads &&
              info.num_kv_heads == c.num_kv_heads && info.head_dim == D &&
              history.first_token >= 0 && history.first_token + prompt_tokens <= info.tokens);
  }
  const std::vector<float> inv_freq = RopeInverseFrequencies(c.rope, D);

  std::vector<Vector> x(n, Vector(static_cast<size_t>(H)));  // The residual stream.
  const TensorView& embed = store.Get("model.embed_tokens.weight");
  for (size_t i = 0; i < n; ++i) {
    std::vector<float> row(static_cast<size_t>(H));
    embed.ToFloat(row.data(), int64_t{prompt[static_cast<size_t>(positions[i])]} * H, H);
    std::copy(row.begin(), row.end(), x[i].begin());
  }
  std::vector<ScalarToken> out(n);
  for (int layer = 0; layer < c.num_layers; ++layer) {
    const LayerWeights w = LoadLayer(store, c, layer);
    for (size_t i = 0; i < n; ++i) {
      const Vector h = RmsNorm(x[i], w.input_norm, c.rms_norm_eps);
      Vector q = MatVec(w.q, h, Bias(w.q_bias)), k = MatVec(w.k, h, Bias(w.k_bias));
      if (c.qk_norm) {
        q = RmsNorm(q, w.q_norm, c.rms_norm_eps);
        k = RmsNorm(k, w.k_norm, c.rms_norm_eps);
      }
      Rope(q, D, inv_freq, positions[i]);
      Rope(k, D, inv_freq, positions[i]);
      out[i].q.push_back(std::move(q));
      out[i].k.push_back(std::move(k));
      out[i].v.push_back(MatVec(w.v, h, Bias(w.v_bias)));
    }
    // This layer's k and v of positions 0..last: [kv_heads, last + 1, head_dim].
    const int64_t count = positions.back() + 1;
    Vector keys(static_cast<size_t>(c.num_kv_heads * count * D));
    Vector values(keys.size());
    if (needs_history) {
      const std::vector<float> k = HistoryRows(history, layer, true, count);
      const std::vector<float> v = HistoryRows(history, layer, false, count);
      std::copy(k.begin(), k.end(), keys.begin());
      std::copy(v.begin(), v.end(), values.begin());
    }
    for (size_t i = 0; i < n; ++i) {
      for (int64_t g = 0; g < c.num_kv_heads; ++g) {
        const auto row = static_cast<size_t>((g * count + positions[i]) * D);
        const auto& k = out[i].k[static_cast<size_t>(layer)];
        const auto& v = out[i].v[static_cast<size_t>(layer)];
        std::copy(k.begin() + g * D, k.begin() + (g + 1) * D, keys.begin() + row);
        std::copy(v.begin() + g * D, v.begin() + (g + 1) * D, values.begin() + row);
      }
    }
    for (size_t i = 0; i < n; ++i) {
      Vector attn(static_cast<size_t>(c.num_heads * D));
      for (int head = 0; head < c.num_heads; ++head) {
        const int64_t offset = head / group * count * D;
        const Vector one = ScalarAttention(
            out[i].q[static_cast<size_t>(layer)].data() + head * D, keys.data() + offset,
            values.data() + offset, positions[i] + 1, D, 1 / std::sqrt(static_cast<double>(D)));
        std::copy(one.begin(), one.end(), attn.begin() + head * D);
      }
      const Vector o = MatVec(w.o, attn, Bias(w.o_bias));
      for (int j = 0; j < H; ++j) x[i][static_cast<size_t>(j)] += o[static_cast<size_t>(j)];
      const Vector h = RmsNorm(x[i], w.post_norm, c.rms_norm_eps);
      Vector gate = MatVec(w.gate, h, Bias(w.gate_bias));
      const Vector up = MatVec(w.up, h, Bias(w.up_bias));
      for (size_t j = 0; j < gate.size(); ++j) gate[j] = gate[j] / (1 + std::exp(-gate[j])) * up[j];
      const Vector down = MatVec(w.down, gate, Bias(w.down_bias));
      for (int j = 0; j < H; ++j) x[i][static_cast<size_t>(j)] += down[static_cast<size_t>(j)];
    }
  }
  if (with_logits) {
    const std::vector<float> final_norm = Widen(store, "model.norm.weight");
    const TensorView& head =
        store.Get(c.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight");
    std::vector<Vector> normed(n);
    for (size_t i = 0; i < n; ++i) {
      normed[i] = RmsNorm(x[i], final_norm, c.rms_norm_eps);
      out[i].logits.resize(static_cast<size_t>(c.vocab_size));
    }
    constexpr int64_t kBlock = 1024;  // Rows of the head widened at a time.
    std::vector<float> rows(static_cast<size_t>(kBlock * H));
    for (int64_t r0 = 0; r0 < c.vocab_size; r0 += kBlock) {
      const int64_t count = std::min<int64_t>(kBlock, c.vocab_size - r0);
      head.ToFloat(rows.data(), r0 * H, count * H);
      for (size_t i = 0; i < n; ++i) {
        for (int64_t r = 0; r < count; ++r) {
          out[i].logits[static_cast<size_t>(r0 + r)] =
              Dot(rows.data() + r * H, normed[i].data(), H);
        }
      }
    }
  }
  return out;
}

namespace {

// max |got - expected| / max |expected|: the golden tests' measure.
double ScaledMaxError(std::span<const float> got, std::span<const double> expected) {
  KVQ_CHECK(got.size() == expected.size());
  double diff = 0, scale = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    diff = std::max(diff, std::fabs(got[i] - expected[i]));
    scale = std::max(scale, std::fabs(expected[i]));
  }
  return diff / scale;
}

// The worst ScaledMaxError over every layer's q, k and v of `dump` at
// `positions` of prompt `prompt_index`; `where` names that tensor.
double DumpErrorVsScalarForward(const std::filesystem::path& model_dir, const KvDump& dump,
                                int64_t prompt_index, std::span<const int64_t> positions,
                                std::string& where) {
  const DumpInfo& info = dump.info();
  const int64_t first = prompt_index * info.chunk_len, D = info.head_dim;
  const std::vector<int32_t> ids = dump.InputIds();
  const auto expected =
      ScalarForward(model_dir, std::span(ids).subspan(static_cast<size_t>(first), info.chunk_len),
                    positions, {&dump, first}, false);
  double worst = -1;
  for (int layer = 0; layer < info.num_layers; ++layer) {
    const std::string prefix = "layers." + std::to_string(layer) + ".";
    for (const auto& [name, heads, member] : {std::tuple{"q", info.num_heads, &ScalarToken::q},
                                              {"k", info.num_kv_heads, &ScalarToken::k},
                                              {"v", info.num_kv_heads, &ScalarToken::v}}) {
      const TensorView& tensor = dump.Tensor(prefix + name);
      for (size_t i = 0; i < positions.size(); ++i) {
        // Token first + positions[i] of each head: [heads, tokens, head_dim] in the dump.
        std::vector<float> got(static_cast<size_t>(heads * D));
        for (int64_t head = 0; head < heads; ++head) {
          tensor.ToFloat(got.data() + head * D, (head * info.tokens + first + positions[i]) * D, D);
        }
        const double error = ScaledMaxError(got, (expected[i].*member)[static_cast<size_t>(layer)]);
        if (error > worst) {
          worst = error;
          where = prefix + name + " at position " + std::to_string(positions[i]) + " of prompt " +
                  std::to_string(prompt_index);
        }
      }
    }
  }
  return worst;
}

// Sum of -log p(ids[t + 1]) for t < ids.size() - 1, ids as one prompt.
double ScalarNllSum(const std::filesystem::path& model_dir, std::span<const int32_t> ids) {
  std::vector<int64_t> positions(ids.size() - 1);
  std::iota(positions.begin(), positions.end(), int64_t{0});
  const auto tokens = ScalarForward(model_dir, ids, positions, {}, true);
  double nll = 0;
  for (size_t t = 0; t < tokens.size(); ++t) {
    const Vector& logits = tokens[t].logits;
    const double top = *std::max_element(logits.begin(), logits.end());
    double total = 0;
    for (double logit : logits) total += std::exp(logit - top);
    nll += top + std::log(total) - logits[static_cast<size_t>(ids[t + 1])];
  }
  return nll;
}

}  // namespace

void RequireDumpMatchesScalarForward(const std::filesystem::path& model_dir,
                                     const std::filesystem::path& dump_path, int64_t prompt_index,
                                     std::span<const int64_t> positions, double bound,
                                     const std::string& label) {
  const KvDump dump = KvDump::Open(dump_path);
  std::string where, list;
  const double error = DumpErrorVsScalarForward(model_dir, dump, prompt_index, positions, where);
  for (const int64_t position : positions)
    list += (list.empty() ? "" : ", ") + std::to_string(position);
  char what[400];
  std::snprintf(what, sizeof what,
                "%s: every layer's q, k, v at positions %s of prompt %lld match the scalar double "
                "forward pass (worst %.2g at %s; bound %.0g)",
                label.c_str(), list.c_str(), static_cast<long long>(prompt_index), error,
                where.c_str(), bound);
  RequireValid(error <= bound, what);
}

void RequirePerplexityMatchesScalarForward(const std::filesystem::path& model_dir,
                                           std::span<const int32_t> ids, const std::string& label) {
  constexpr double kBound = 1e-6;
  const auto prompt = ids.first(4);
  Model model = Model::Load(model_dir);
  const double got = EvaluatePerplexity(model, prompt, 4, {}).baseline.nll_sum;
  const double expected = ScalarNllSum(model_dir, prompt);
  const double error = std::fabs(got - expected) / expected;
  char what[300];
  std::snprintf(what, sizeof what,
                "%s: the baseline nll of a 4-token prompt matches the scalar double forward pass "
                "(%.6f vs %.6f, relative %.1g; bound %.0g)",
                label.c_str(), got, expected, error, kBound);
  RequireValid(error <= kBound, what);
}

}  // namespace kvq::bench
