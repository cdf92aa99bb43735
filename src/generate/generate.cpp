#include "kvq/generate/generate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "kvq/common/csv.h"
#include "kvq/common/error.h"
#include "kvq/common/io.h"
#include "kvq/common/json.h"
#include "kvq/metrics/perplexity.h"
#include "kvq/tokenizer/tokenizer.h"

namespace kvq {

int32_t PickToken(const float* logits, int64_t vocab, const SamplingOptions& o, SplitMix64& rng) {
  KVQ_CHECK(vocab > 0);
  const float* argmax = std::max_element(logits, logits + vocab);
  if (o.temperature <= 0) return static_cast<int32_t>(argmax - logits);
  if (!(o.top_p > 0 && o.top_p <= 1)) ThrowInput("--top-p must be in (0, 1], got {}", o.top_p);
  std::vector<double> p(static_cast<size_t>(vocab));
  double total = 0;
  for (int64_t i = 0; i < vocab; ++i) {
    p[static_cast<size_t>(i)] =
        std::exp((static_cast<double>(logits[i]) - *argmax) / o.temperature);
    total += p[static_cast<size_t>(i)];
  }
  std::vector<int32_t> order(static_cast<size_t>(vocab));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return p[static_cast<size_t>(a)] > p[static_cast<size_t>(b)];
  });
  size_t kept = 0;
  double nucleus = 0;
  while (kept < order.size()) {
    nucleus += p[static_cast<size_t>(order[kept++])];
    if (nucleus >= o.top_p * total) break;
  }
  const double u = rng.Uniform() * nucleus;
  double cumulative = 0;
  for (size_t i = 0; i < kept; ++i) {
    cumulative += p[static_cast<size_t>(order[i])];
    if (cumulative > u) return order[i];
  }
  return order[kept - 1];
}

namespace {

// Prefill: the cache takes each layer's K and V and gives back its values,
// which attention then reads.
class PrefillHook : public LayerHook {
 public:
  PrefillHook(QuantizedKvCache& cache, const ModelConfig& c) : cache_(cache), c_(c) {}
  void OnKV(LayerKV& kv) override {
    cache_.Append(kv.layer, kv.k, kv.v, kv.tokens, kv.k_bias);
    const int D = c_.head_dim;
    const int64_t width = static_cast<int64_t>(c_.num_kv_heads) * D;
    for (int h = 0; h < c_.num_kv_heads; ++h) {
      const float* k = cache_.Values(KvTensor::kK, kv.layer, h);
      const float* v = cache_.Values(KvTensor::kV, kv.layer, h);
      for (int64_t t = 0; t < kv.tokens; ++t) {
        std::copy_n(k + t * D, D, kv.k + t * width + h * D);
        std::copy_n(v + t * D, D, kv.v + t * width + h * D);
      }
    }
  }

 private:
  QuantizedKvCache& cache_;
  const ModelConfig& c_;
};

class CacheAttention : public CachedAttention {
 public:
  CacheAttention(QuantizedKvCache& cache, const ModelConfig& c) : cache_(cache), c_(c) {}
  void Attend(const LayerKV& kv, int64_t position, float* attn) override {
    KVQ_CHECK(cache_.length(kv.layer) == position);
    cache_.Append(kv.layer, kv.k, kv.v, kv.tokens, kv.k_bias);
    std::vector<const float*> k, v;
    for (int h = 0; h < c_.num_kv_heads; ++h) {
      k.push_back(cache_.Values(KvTensor::kK, kv.layer, h));
      v.push_back(cache_.Values(KvTensor::kV, kv.layer, h));
    }
    DecodeAttention(c_.num_heads, c_.num_kv_heads, c_.head_dim, position, kv.tokens, kv.q, k, v,
                    attn);
  }

 private:
  QuantizedKvCache& cache_;
  const ModelConfig& c_;
};

}  // namespace

Decoder::Decoder(Model& model, const Strategy* strategy)
    : model_(model), cache_(model.config(), strategy) {}

const std::vector<float>& Decoder::Prefill(std::span<const int32_t> prompt) {
  if (prompt.empty()) ThrowInput("the prompt is empty");
  KVQ_CHECK(position_ == 0);
  const auto n = static_cast<int64_t>(prompt.size());
  PrefillHook hook(cache_, model_.config());
  model_.Forward(prompt, n, &hook, &hidden_);
  position_ = n;
  const int64_t H = model_.config().hidden_size;
  logits_.resize(static_cast<size_t>(model_.config().vocab_size));
  model_.Logits(hidden_.data() + (n - 1) * H, 1, logits_.data());
  return logits_;
}

const std::vector<float>& Decoder::Step(int32_t token) {
  KVQ_CHECK(position_ > 0);
  CacheAttention attention(cache_, model_.config());
  const int32_t ids[1] = {token};
  model_.ForwardAt(ids, position_, attention, &hidden_);
  ++position_;
  model_.Logits(hidden_.data(), 1, logits_.data());
  return logits_;
}

const char* StopReasonName(StopReason reason) {
  return reason == StopReason::kEos ? "eos" : "length";
}

DecodeRun Generate(Model& model, std::span<const int32_t> prompt, const Strategy* strategy,
                   int64_t new_tokens, const SamplingOptions& sampling, bool keep_logits,
                   std::span<const int32_t> eos) {
  KVQ_CHECK(new_tokens > 0);
  const int64_t V = model.config().vocab_size;
  DecodeRun run;
  Decoder decoder(model, strategy);
  SplitMix64 rng(sampling.seed);
  const std::vector<float>* logits = &decoder.Prefill(prompt);
  const auto start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < new_tokens; ++i) {
    if (i > 0) {
      logits = &decoder.Step(run.tokens.back());
      ++run.decode_steps;
    }
    if (keep_logits) run.logits.insert(run.logits.end(), logits->begin(), logits->end());
    run.tokens.push_back(PickToken(logits->data(), V, sampling, rng));
    if (std::find(eos.begin(), eos.end(), run.tokens.back()) != eos.end()) {
      run.stop = StopReason::kEos;
      break;
    }
  }
  run.decode_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  run.cache_bytes = decoder.cache().Bytes();
  return run;
}

DecodeRun TeacherForced(Model& model, std::span<const int32_t> prompt,
                        std::span<const int32_t> forced, const Strategy* strategy) {
  DecodeRun run;
  Decoder decoder(model, strategy);
  const std::vector<float>* logits = &decoder.Prefill(prompt);
  const auto start = std::chrono::steady_clock::now();
  for (size_t i = 0; i < forced.size(); ++i) {
    if (i > 0) {
      logits = &decoder.Step(forced[i - 1]);
      ++run.decode_steps;
    }
    run.logits.insert(run.logits.end(), logits->begin(), logits->end());
    run.tokens.push_back(forced[i]);
  }
  run.decode_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  run.cache_bytes = decoder.cache().Bytes();
  return run;
}

namespace {

std::vector<std::pair<std::string, AppendRule>> Rules(const Strategy& s, const ModelConfig& c) {
  std::vector<std::pair<std::string, AppendRule>> rules;
  for (KvTensor tensor : {KvTensor::kK, KvTensor::kV}) {
    for (int l = 0; l < c.num_layers; ++l) {
      for (int h = 0; h < c.num_kv_heads; ++h) {
        const FormatSpec& f = s.Format(tensor, l, h);
        std::pair<std::string, AppendRule> rule{f.Name(), RuleFor(f)};
        if (std::find(rules.begin(), rules.end(), rule) == rules.end()) rules.push_back(rule);
      }
    }
  }
  return rules;
}

GenerateResult Result(const Strategy& s, const DecodeRun& run, const ModelConfig& c,
                      const Tokenizer* tokenizer) {
  GenerateResult r;
  r.strategy = s.name;
  r.tokens = run.tokens;
  r.stop = run.stop;
  if (tokenizer) r.text = tokenizer->Decode(run.tokens);
  r.tokens_per_s = run.decode_seconds > 0 && run.decode_steps > 0
                       ? static_cast<double>(run.decode_steps) / run.decode_seconds
                       : 0;
  r.cache_bytes = run.cache_bytes;
  r.rules = Rules(s, c);
  return r;
}

}  // namespace

GenerateReport CompareGeneration(Model& model, std::span<const int32_t> prompt,
                                 const std::vector<Strategy>& strategies, int64_t new_tokens,
                                 const SamplingOptions& sampling, const Tokenizer* tokenizer,
                                 std::span<const int32_t> eos) {
  if (new_tokens <= 0) ThrowInput("--max-new-tokens must be positive");
  const ModelConfig& c = model.config();
  // The prompt and every new token but the last (which is only picked) go
  // through the model: prompt + new_tokens - 1 positions, checked before any
  // work rather than when a decode step reaches the limit.
  const auto prompt_tokens = static_cast<int64_t>(prompt.size());
  const int64_t limit = c.max_position_embeddings;
  if (limit > 0 && prompt_tokens > limit) {
    ThrowInput("the prompt's {} tokens are more than the model's max_position_embeddings {}",
               prompt_tokens, limit);
  }
  if (limit > 0 && prompt_tokens + new_tokens - 1 > limit) {
    ThrowInput(
        "--max-new-tokens {} after a prompt of {} tokens needs {} positions, more than the model's "
        "max_position_embeddings {}: at most {} new tokens fit",
        new_tokens, prompt_tokens, prompt_tokens + new_tokens - 1, limit,
        limit - prompt_tokens + 1);
  }
  const int64_t V = c.vocab_size;
  GenerateReport report;
  report.prompt_tokens = prompt_tokens;
  const Strategy fp16 = Strategy::Parse("fp16");
  // Scans the weights for NaN and Inf (Model::ForwardAt's first step) before any
  // timed decode step.
  Generate(model, prompt.first(1), nullptr, 2, {}, false);
  const DecodeRun base = Generate(model, prompt, &fp16, new_tokens, sampling, true, eos);
  report.baseline = Result(fp16, base, c, tokenizer);
  report.baseline.match_fraction = 1;
  report.baseline.kl.assign(base.tokens.size(), 0.0);
  for (const Strategy& s : strategies) {
    const DecodeRun run = Generate(model, prompt, &s, new_tokens, sampling, false, eos);
    GenerateResult r = Result(s, run, c, tokenizer);
    const size_t common = std::min(run.tokens.size(), base.tokens.size());
    const size_t longer = std::max(run.tokens.size(), base.tokens.size());
    int64_t matches = 0;
    for (size_t i = 0; i < common; ++i) {
      if (run.tokens[i] == base.tokens[i]) {
        ++matches;
      } else if (!r.first_divergence) {
        r.first_divergence = static_cast<int64_t>(i);
      }
    }
    if (!r.first_divergence && common < longer) r.first_divergence = static_cast<int64_t>(common);
    r.match_fraction = static_cast<double>(matches) / static_cast<double>(longer);
    const DecodeRun forced = TeacherForced(model, prompt, base.tokens, &s);
    double sum = 0;
    for (size_t i = 0; i < base.tokens.size(); ++i) {
      const TokenComparison cmp =
          CompareNextToken(base.logits.data() + i * static_cast<size_t>(V),
                           forced.logits.data() + i * static_cast<size_t>(V), V, base.tokens[i]);
      r.kl.push_back(cmp.kl);
      sum += cmp.kl;
    }
    r.kl_mean = sum / static_cast<double>(base.tokens.size());
    report.strategies.push_back(std::move(r));
  }
  return report;
}

std::vector<int32_t> EosTokenIds(const std::filesystem::path& model_dir, int vocab_size) {
  for (const char* name : {"generation_config.json", "config.json"}) {
    const std::filesystem::path file = model_dir / name;
    if (!std::filesystem::exists(file)) continue;
    const std::string where = file.string();
    nlohmann::json j;
    try {
      j = ParseJson(ReadTextFile(file), where);
    } catch (const nlohmann::json::exception& e) {
      ThrowInput("{}: not valid JSON: {}", where, JsonErrorText(e));
    }
    if (!j.is_object() || !j.contains("eos_token_id") || j["eos_token_id"].is_null()) continue;
    const nlohmann::json& value = j["eos_token_id"];
    std::vector<int32_t> ids;
    for (const nlohmann::json& id : value.is_array() ? value : nlohmann::json::array({value})) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= vocab_size) {
        ThrowInput("{}: eos_token_id must be an integer in [0, {}) or a list of them, got {}",
                   where, vocab_size, Printable(value.dump(), 60));
      }
      ids.push_back(id.get<int32_t>());
    }
    return ids;
  }
  return {};
}

namespace {

nlohmann::ordered_json ResultJson(const GenerateResult& r) {
  nlohmann::ordered_json j;
  j["strategy"] = r.strategy;
  j["tokens"] = r.tokens;
  j["stop_reason"] = StopReasonName(r.stop);
  j["text"] = r.text ? nlohmann::ordered_json(*r.text) : nlohmann::ordered_json(nullptr);
  j["first_divergence"] = r.first_divergence ? nlohmann::ordered_json(*r.first_divergence)
                                             : nlohmann::ordered_json(nullptr);
  j["match_fraction"] = r.match_fraction;
  j["kl_mean"] = r.kl_mean;
  j["kl"] = r.kl;
  j["tokens_per_s"] = r.tokens_per_s;
  j["cache_bytes"] = r.cache_bytes;
  j["rules"] = nlohmann::ordered_json::array();
  for (const auto& [format, rule] : r.rules) {
    j["rules"].push_back({{"format", format}, {"rule", AppendRuleName(rule)}});
  }
  return j;
}

}  // namespace

std::string GenerateJson(const GenerateReport& report) {
  nlohmann::ordered_json j;
  j["prompt_tokens"] = report.prompt_tokens;
  j["baseline"] = ResultJson(report.baseline);
  j["strategies"] = nlohmann::ordered_json::array();
  for (const auto& r : report.strategies) j["strategies"].push_back(ResultJson(r));
  return j.dump(2) + "\n";
}

std::string GenerateCsv(const GenerateReport& report) {
  std::string out =
      "strategy,new_tokens,stop_reason,first_divergence,match_fraction,kl_mean,tokens_per_s,"
      "cache_bytes,rules,text\n";
  auto row = [&out](const GenerateResult& r) {
    std::string rules;
    for (const auto& [format, rule] : r.rules) {
      rules += (rules.empty() ? "" : " ") + format + "=" + AppendRuleName(rule);
    }
    out += fmt::format("{},{},{},{},{:.9g},{:.9g},{:.9g},{:.9g},{},{}\n", CsvField(r.strategy),
                       r.tokens.size(), StopReasonName(r.stop),
                       r.first_divergence ? std::to_string(*r.first_divergence) : "",
                       r.match_fraction, r.kl_mean, r.tokens_per_s, r.cache_bytes, CsvField(rules),
                       r.text ? CsvField(*r.text) : "");
  };
  row(report.baseline);
  for (const auto& r : report.strategies) row(r);
  return out;
}

}  // namespace kvq
