#pragma once
// Incremental decoding with a (quantized) KV cache, and `kvq generate`'s
// comparison of strategies against the fp16-cache run (docs/generate.md).
//
// Prefill: the prompt goes through Model::Forward as one prompt; a layer hook
// appends each layer's K and V to the cache and hands the cache's values back
// to the forward pass, so the prompt's attention reads the cache as every
// later step does. Decode: one token at a time through Model::ForwardAt (the
// same layer code), attention (DecodeAttention) over the cache.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "kvq/common/random.h"
#include "kvq/generate/kv_cache.h"
#include "kvq/model/model.h"
#include "kvq/quant/strategy.h"

namespace kvq {

class Tokenizer;

// Causal attention of new query rows against a cache: q [tokens, num_heads *
// head_dim] token-major at positions [position, position + tokens); for kv
// head g, k[g] and v[g] point to [position + tokens, head_dim]. Query t sees
// keys 0..position + t. Per head: s_j = k_j . (scale * q), p = softmax(s)
// (float, exp by FastExp), out = sum_j p_j v_j. Writes out [tokens, num_heads
// * head_dim]. The query heads of a kv head are attended in one pass over its
// keys, in blocks of keys whose softmax sums are merged flash-decoding style
// (src/generate/decode_attention.cpp); the result does not depend on the
// thread count, and the SIMD targets agree within float rounding.
void DecodeAttention(int num_heads, int num_kv_heads, int head_dim, int64_t position,
                     int64_t tokens, const float* q, const std::vector<const float*>& k,
                     const std::vector<const float*>& v, float* out);

struct SamplingOptions {
  double temperature = 0;  // 0: greedy (the first argmax).
  double top_p = 1;        // Nucleus: (0, 1].
  uint64_t seed = 0;
};

// The next token from logits [vocab]: greedy when temperature == 0, else a
// draw u = rng.Uniform() from softmax(logits / temperature) restricted to the
// top-p nucleus (tokens by decreasing probability, ties by id, up to and
// including the first whose cumulative probability reaches top_p), renormalised:
// the first nucleus token whose cumulative probability exceeds u * total.
int32_t PickToken(const float* logits, int64_t vocab, const SamplingOptions& options,
                  SplitMix64& rng);

class Decoder {
 public:
  // strategy: nullptr for an exact float32 cache.
  Decoder(Model& model, const Strategy* strategy);

  // Runs the prompt (positions 0..n-1); returns the logits [vocab] that
  // predict the token after it.
  const std::vector<float>& Prefill(std::span<const int32_t> prompt);
  // Appends `token` at the next position; returns the next-token logits.
  const std::vector<float>& Step(int32_t token);

  const QuantizedKvCache& cache() const { return cache_; }
  int64_t position() const { return position_; }

 private:
  Model& model_;
  QuantizedKvCache cache_;
  int64_t position_ = 0;
  std::vector<float> hidden_, logits_;
};

enum class StopReason { kLength, kEos };
const char* StopReasonName(StopReason reason);  // "length", "eos"

struct DecodeRun {
  std::vector<int32_t> tokens;  // Generated (free-running) or the forced tokens.
  StopReason stop = StopReason::kLength;
  std::vector<float> logits;  // [tokens, vocab]: the logits that predicted tokens[i] (if kept).
  int64_t decode_steps = 0;   // Model::ForwardAt calls (tokens - 1).
  double decode_seconds = 0;  // Their wall time.
  double cache_bytes = 0;     // At the end.
};

// Generates up to new_tokens tokens after the prompt; stops after the first
// token that is one of `eos` (kept as the last token, stop = kEos). Empty
// eos: exactly new_tokens tokens.
DecodeRun Generate(Model& model, std::span<const int32_t> prompt, const Strategy* strategy,
                   int64_t new_tokens, const SamplingOptions& sampling, bool keep_logits,
                   std::span<const int32_t> eos = {});
// Teacher-forced: feeds forced[0..n-1) after the prompt; logits[i] predicts forced[i].
DecodeRun TeacherForced(Model& model, std::span<const int32_t> prompt,
                        std::span<const int32_t> forced, const Strategy* strategy);

struct GenerateResult {
  std::string strategy;
  std::vector<int32_t> tokens;
  StopReason stop = StopReason::kLength;
  std::optional<std::string> text;  // With a tokenizer.
  // The first index where tokens and the baseline's differ, or where one
  // of them has ended (EOS) and the other not; none when they are equal.
  std::optional<int64_t> first_divergence;
  // Indices i with tokens[i] == baseline's, over the longer of the two.
  double match_fraction = 0;
  std::vector<double> kl;  // Per step, teacher-forced on the baseline's tokens.
  double kl_mean = 0;
  double tokens_per_s = 0;  // decode_steps / decode_seconds of the free run.
  double cache_bytes = 0;
  // Distinct (format, rule) pairs the cache applied.
  std::vector<std::pair<std::string, AppendRule>> rules;
};

struct GenerateReport {
  int64_t prompt_tokens = 0;
  GenerateResult baseline;  // The fp16 cache.
  std::vector<GenerateResult> strategies;
};

// eos: the end-of-sequence ids every run stops at (empty: none).
GenerateReport CompareGeneration(Model& model, std::span<const int32_t> prompt,
                                 const std::vector<Strategy>& strategies, int64_t new_tokens,
                                 const SamplingOptions& sampling, const Tokenizer* tokenizer,
                                 std::span<const int32_t> eos = {});

// The model's end-of-sequence ids: eos_token_id (an integer or a list) of
// generation_config.json when that file has one, else of config.json; empty
// when neither has. InputError naming the file for a malformed value or an
// id outside [0, vocab_size).
std::vector<int32_t> EosTokenIds(const std::filesystem::path& model_dir, int vocab_size);

// {"prompt_tokens", "baseline": {...}, "strategies": [{"strategy", "tokens", "stop_reason",
// "text", "first_divergence", "match_fraction", "kl_mean", "kl", "tokens_per_s",
// "cache_bytes", "rules": [{"format", "rule"}]}]}
std::string GenerateJson(const GenerateReport& report);
// strategy,new_tokens,stop_reason,first_divergence,match_fraction,kl_mean,tokens_per_s,
// cache_bytes,rules,text
std::string GenerateCsv(const GenerateReport& report);

}  // namespace kvq
