#pragma once
// Passkey retrieval at long context (`kvq needle`; the protocol is in
// docs/generate.md): a 5-digit key hidden at a given depth of filler text,
// then the question; a strategy's cache passes a trial when the greedy
// continuation (Generate: prefill, then decode with the quantized cache)
// starts with the key.
//
// The prompt, as text (every piece after the first starts with a space):
//   task      "There is an important info hidden inside a lot of irrelevant
//              text. Find it and memorize it. I will quiz you about the
//              important information there."
//   filler    " The grass is green." " The sky is blue." " The sun is yellow."
//             " Here we go." " There and back again." repeated, whole
//             sentences, the needle between two of them
//   needle    " The pass key is K. Remember it. K is the pass key."
//   filler    the rest of the whole sentences, then the first r tokens of
//             the next sentence (r = the tokens still missing, so that the
//             prompt has exactly the requested length)
//   question  " What is the pass key? The pass key is"
// The ids are the concatenation of each piece's ids (Tokenizer::Encode,
// no BOS, as everywhere in kvq), so the length is exact by construction.
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "kvq/model/model.h"
#include "kvq/quant/strategy.h"

namespace kvq {

class Tokenizer;

inline constexpr std::string_view kNeedleTask =
    "There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. "
    "I will quiz you about the important information there.";
inline constexpr std::string_view kNeedleFiller[] = {" The grass is green.", " The sky is blue.",
                                                     " The sun is yellow.", " Here we go.",
                                                     " There and back again."};
inline constexpr std::string_view kNeedleQuestion = " What is the pass key? The pass key is";
// " The pass key is K. Remember it. K is the pass key."
std::string NeedleSentence(int key);

// The key of one trial: 10000 + (SplitMix64(seed').Next() % 90000) with seed'
// a mix of (seed, length, depth in hundredths of a percent): a different key
// per (seed, cell), the same for every strategy and every run.
int NeedleKey(uint64_t seed, int64_t length, double depth_percent);

struct NeedlePrompt {
  std::vector<int32_t> ids;  // Exactly the requested length.
  int key = 0;
  int64_t needle_begin = 0, needle_end = 0;  // Token range of the needle sentence.
  int64_t filler_begin = 0;                  // First filler token (the task's length).
  int64_t whole_sentences = 0;               // Whole filler sentences (the cut one not counted).
  int64_t sentences_before = 0;  // round(depth / 100 * whole_sentences): before the needle.
};

// The shortest prompt for `key`: task + needle + question, no filler.
int64_t NeedleMinLength(const Tokenizer& tokenizer, int key);

// Throws InputError naming --lengths when `length` < NeedleMinLength, and
// --depths when depth_percent is not in [0, 100].
NeedlePrompt BuildNeedlePrompt(const Tokenizer& tokenizer, int64_t length, double depth_percent,
                               int key);

// The continuation's text passes when, after leading white space, it starts
// with the key's five digits and no further digit follows.
bool NeedleAnswerCorrect(std::string_view answer, int key);

struct NeedleOptions {
  std::vector<int64_t> lengths;
  std::vector<double> depths = {0, 25, 50, 75, 100};  // Percent of the filler before the needle.
  int seeds = 3;                                      // Trials per cell: seeds 0..seeds-1.
  int64_t answer_tokens = 8;                          // Greedy tokens decoded after the question.
};

struct NeedleTrial {
  std::string strategy;
  int64_t length = 0;
  double depth = 0;
  int seed = 0;
  int key = 0;
  int64_t needle_position = 0;  // needle_begin.
  std::string answer;           // The decoded continuation.
  bool correct = false;
};

struct NeedleCell {
  std::string strategy;
  int64_t length = 0;
  double depth = 0;
  int trials = 0, correct = 0;
  double accuracy = 0;  // correct / trials.
};

struct NeedleReport {
  NeedleOptions options;
  std::vector<std::string> strategies;  // "fp16" (the baseline) first.
  std::vector<NeedleTrial> trials;
  std::vector<NeedleCell> cells;  // Per (strategy, length, depth), in that order.
};

// The longest needle prompt whose answer still fits the model's
// max_position_embeddings M: the prompt and the answer's first
// answer_tokens - 1 tokens are fed through the model (the last one is only
// picked), so M - answer_tokens + 1; 0 when the config gives no M.
int64_t NeedleMaxLength(const ModelConfig& config, int64_t answer_tokens);

// Every (length, depth, seed) prompt is built once and run with the fp16
// cache and each strategy (a strategy named "fp16" is the baseline, not run
// twice). Throws InputError, before any trial, for a length above
// NeedleMaxLength (naming --lengths), a bad depth, or seeds < 1.
// progress(done, total) after each trial.
NeedleReport RunNeedle(Model& model, const Tokenizer& tokenizer,
                       const std::vector<Strategy>& strategies, const NeedleOptions& options,
                       const std::function<void(int64_t, int64_t)>& progress = {});

// The cells of `trials`, per (strategy, length, depth) in the order of
// `strategies`, options.lengths and options.depths.
std::vector<NeedleCell> NeedleCells(const NeedleReport& report);

// strategy,length,depth,trials,correct,accuracy
std::string NeedleCsv(const NeedleReport& report);
// {"lengths", "depths", "seeds", "answer_tokens", "strategies", "cells":
//  [{strategy, length, depth, trials, correct, accuracy}], "trials": [{strategy,
//  length, depth, seed, key, needle_position, answer, correct}]}
std::string NeedleJson(const NeedleReport& report);
// Back from NeedleJson's text (the report reads needle.json); InputError
// naming `where` when malformed.
NeedleReport ParseNeedleJson(const std::string& text, const std::string& where);

// Accuracy heatmaps, depth (rows) x length (columns), one panel per
// strategy, as a standalone SVG.
std::string NeedleHeatmapSvg(const NeedleReport& report, const std::string& context);

}  // namespace kvq
