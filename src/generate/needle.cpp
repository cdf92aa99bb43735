#include "kvq/generate/needle.h"

#include <algorithm>
#include <cmath>
#include <iterator>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "kvq/common/csv.h"
#include "kvq/common/error.h"
#include "kvq/common/json.h"
#include "kvq/common/random.h"
#include "kvq/generate/generate.h"
#include "kvq/report/svg.h"
#include "kvq/tokenizer/tokenizer.h"

namespace kvq {

std::string NeedleSentence(int key) {
  return fmt::format(" The pass key is {0}. Remember it. {0} is the pass key.", key);
}

int NeedleKey(uint64_t seed, int64_t length, double depth_percent) {
  // Each field through its own SplitMix64 step, so that nearby cells do not
  // share a stream.
  SplitMix64 mix(seed);
  uint64_t state = mix.Next();
  state = SplitMix64(state ^ static_cast<uint64_t>(length)).Next();
  state = SplitMix64(state ^ static_cast<uint64_t>(std::llround(depth_percent * 100))).Next();
  return 10000 + static_cast<int>(SplitMix64(state).Next() % 90000);
}

int64_t NeedleMinLength(const Tokenizer& tokenizer, int key) {
  return static_cast<int64_t>(tokenizer.Encode(kNeedleTask).size() +
                              tokenizer.Encode(NeedleSentence(key)).size() +
                              tokenizer.Encode(kNeedleQuestion).size());
}

NeedlePrompt BuildNeedlePrompt(const Tokenizer& tokenizer, int64_t length, double depth_percent,
                               int key) {
  if (!(depth_percent >= 0 && depth_percent <= 100)) {
    ThrowInput("--depths: {} is not a percentage in [0, 100]", depth_percent);
  }
  const std::vector<int32_t> task = tokenizer.Encode(kNeedleTask);
  const std::vector<int32_t> needle = tokenizer.Encode(NeedleSentence(key));
  const std::vector<int32_t> question = tokenizer.Encode(kNeedleQuestion);
  const auto fixed = static_cast<int64_t>(task.size() + needle.size() + question.size());
  if (length < fixed) {
    ThrowInput("--lengths: {} tokens is shorter than the passkey prompt without filler ({} tokens)",
               length, fixed);
  }
  std::vector<std::vector<int32_t>> sentences;
  for (std::string_view s : kNeedleFiller) sentences.push_back(tokenizer.Encode(s));

  // Whole sentences while they fit, then a token-exact cut of the next.
  const int64_t budget = length - fixed;
  int64_t used = 0, whole = 0;
  const auto count = static_cast<int64_t>(std::size(kNeedleFiller));
  while (true) {
    const auto next = static_cast<int64_t>(sentences[static_cast<size_t>(whole % count)].size());
    if (used + next > budget) break;
    used += next;
    ++whole;
  }
  NeedlePrompt p;
  p.key = key;
  p.whole_sentences = whole;
  p.sentences_before = std::llround(depth_percent / 100 * static_cast<double>(whole));
  p.ids = task;
  p.filler_begin = static_cast<int64_t>(task.size());
  auto append_sentence = [&](int64_t i) {
    const auto& s = sentences[static_cast<size_t>(i % count)];
    p.ids.insert(p.ids.end(), s.begin(), s.end());
  };
  for (int64_t i = 0; i < p.sentences_before; ++i) append_sentence(i);
  p.needle_begin = static_cast<int64_t>(p.ids.size());
  p.ids.insert(p.ids.end(), needle.begin(), needle.end());
  p.needle_end = static_cast<int64_t>(p.ids.size());
  for (int64_t i = p.sentences_before; i < whole; ++i) append_sentence(i);
  const auto& cut = sentences[static_cast<size_t>(whole % count)];
  p.ids.insert(p.ids.end(), cut.begin(), cut.begin() + (budget - used));
  p.ids.insert(p.ids.end(), question.begin(), question.end());
  KVQ_CHECK(static_cast<int64_t>(p.ids.size()) == length);
  return p;
}

bool NeedleAnswerCorrect(std::string_view answer, int key) {
  const auto isdigit = [](char c) { return c >= '0' && c <= '9'; };
  size_t i = 0;
  while (i < answer.size() &&
         (answer[i] == ' ' || answer[i] == '\t' || answer[i] == '\n' || answer[i] == '\r')) {
    ++i;
  }
  const std::string digits = std::to_string(key);
  if (answer.substr(i, digits.size()) != digits) return false;
  const size_t after = i + digits.size();
  return after >= answer.size() || !isdigit(answer[after]);
}

int64_t NeedleMaxLength(const ModelConfig& config, int64_t answer_tokens) {
  KVQ_CHECK(answer_tokens >= 1);
  if (config.max_position_embeddings <= 0) return 0;
  return std::max<int64_t>(0, config.max_position_embeddings - answer_tokens + 1);
}

NeedleReport RunNeedle(Model& model, const Tokenizer& tokenizer,
                       const std::vector<Strategy>& strategies, const NeedleOptions& options,
                       const std::function<void(int64_t, int64_t)>& progress) {
  const ModelConfig& c = model.config();
  if (options.lengths.empty()) ThrowInput("--lengths: no length given");
  if (options.depths.empty()) ThrowInput("--depths: no depth given");
  if (options.seeds < 1) ThrowInput("--seeds must be at least 1, got {}", options.seeds);
  if (options.answer_tokens < 1) ThrowInput("the answer needs at least one token");
  const int64_t max_length = NeedleMaxLength(c, options.answer_tokens);
  for (int64_t length : options.lengths) {
    if (length <= 0) ThrowInput("--lengths: {} is not a positive token count", length);
    if (max_length > 0 && length > max_length) {
      ThrowInput(
          "--lengths: {} is above {}, the longest prompt whose {} answer tokens fit the model's "
          "max_position_embeddings ({})",
          length, max_length, options.answer_tokens, c.max_position_embeddings);
    }
  }
  for (double depth : options.depths) {
    if (!(depth >= 0 && depth <= 100)) {
      ThrowInput("--depths: {} is not a percentage in [0, 100]", depth);
    }
  }
  std::vector<Strategy> runs = {Strategy::Parse("fp16")};
  for (const Strategy& s : strategies) {
    if (s.name != runs[0].name) runs.push_back(s);
  }
  // Every strategy is validated against the model before the first trial.
  for (const Strategy& s : runs) s.Validate({c.num_layers, c.num_kv_heads, c.head_dim});

  NeedleReport report;
  report.options = options;
  for (const Strategy& s : runs) report.strategies.push_back(s.name);
  // Every prompt first (cheap: only the pieces are tokenized), so that a
  // length too short for the prompt is refused before any decoding.
  struct Cell {
    int64_t length;
    double depth;
    int seed;
    NeedlePrompt prompt;
  };
  std::vector<Cell> cells;
  for (int64_t length : options.lengths) {
    for (double depth : options.depths) {
      for (int seed = 0; seed < options.seeds; ++seed) {
        const int key = NeedleKey(static_cast<uint64_t>(seed), length, depth);
        cells.push_back({length, depth, seed, BuildNeedlePrompt(tokenizer, length, depth, key)});
      }
    }
  }
  const int64_t total = static_cast<int64_t>(cells.size() * runs.size());
  int64_t done = 0;
  for (const Cell& cell : cells) {
    for (const Strategy& s : runs) {
      const DecodeRun run = Generate(model, cell.prompt.ids, &s, options.answer_tokens, {}, false);
      NeedleTrial t;
      t.strategy = s.name;
      t.length = cell.length;
      t.depth = cell.depth;
      t.seed = cell.seed;
      t.key = cell.prompt.key;
      t.needle_position = cell.prompt.needle_begin;
      t.answer = tokenizer.Decode(run.tokens);
      t.correct = NeedleAnswerCorrect(t.answer, t.key);
      report.trials.push_back(std::move(t));
      if (progress) progress(++done, total);
    }
  }
  report.cells = NeedleCells(report);
  return report;
}

std::vector<NeedleCell> NeedleCells(const NeedleReport& report) {
  std::vector<NeedleCell> cells;
  for (const std::string& strategy : report.strategies) {
    for (int64_t length : report.options.lengths) {
      for (double depth : report.options.depths) {
        NeedleCell cell{strategy, length, depth};
        for (const NeedleTrial& t : report.trials) {
          if (t.strategy == strategy && t.length == length && t.depth == depth) {
            ++cell.trials;
            cell.correct += t.correct;
          }
        }
        cell.accuracy = cell.trials > 0 ? static_cast<double>(cell.correct) / cell.trials : 0;
        cells.push_back(cell);
      }
    }
  }
  return cells;
}

std::string NeedleCsv(const NeedleReport& report) {
  std::string out = "strategy,length,depth,trials,correct,accuracy\n";
  for (const NeedleCell& c : report.cells) {
    out += fmt::format("{},{},{},{},{},{:.9g}\n", CsvField(c.strategy), c.length, c.depth, c.trials,
                       c.correct, c.accuracy);
  }
  return out;
}

std::string NeedleJson(const NeedleReport& report) {
  nlohmann::ordered_json j;
  j["lengths"] = report.options.lengths;
  j["depths"] = report.options.depths;
  j["seeds"] = report.options.seeds;
  j["answer_tokens"] = report.options.answer_tokens;
  j["strategies"] = report.strategies;
  j["cells"] = nlohmann::ordered_json::array();
  for (const NeedleCell& c : report.cells) {
    j["cells"].push_back({{"strategy", c.strategy},
                          {"length", c.length},
                          {"depth", c.depth},
                          {"trials", c.trials},
                          {"correct", c.correct},
                          {"accuracy", c.accuracy}});
  }
  j["trials"] = nlohmann::ordered_json::array();
  for (const NeedleTrial& t : report.trials) {
    j["trials"].push_back({{"strategy", t.strategy},
                           {"length", t.length},
                           {"depth", t.depth},
                           {"seed", t.seed},
                           {"key", t.key},
                           {"needle_position", t.needle_position},
                           {"answer", t.answer},
                           {"correct", t.correct}});
  }
  return j.dump(2) + "\n";
}

NeedleReport ParseNeedleJson(const std::string& text, const std::string& where) {
  NeedleReport r;
  try {
    const nlohmann::json j = ParseJson(text, where);
    r.options.lengths = j.at("lengths").get<std::vector<int64_t>>();
    r.options.depths = j.at("depths").get<std::vector<double>>();
    r.options.seeds = j.at("seeds").get<int>();
    r.options.answer_tokens = j.at("answer_tokens").get<int64_t>();
    r.strategies = j.at("strategies").get<std::vector<std::string>>();
    for (const auto& t : j.at("trials")) {
      NeedleTrial trial;
      trial.strategy = t.at("strategy").get<std::string>();
      trial.length = t.at("length").get<int64_t>();
      trial.depth = t.at("depth").get<double>();
      trial.seed = t.at("seed").get<int>();
      trial.key = t.at("key").get<int>();
      trial.needle_position = t.at("needle_position").get<int64_t>();
      trial.answer = t.at("answer").get<std::string>();
      trial.correct = t.at("correct").get<bool>();
      r.trials.push_back(std::move(trial));
    }
  } catch (const nlohmann::json::exception& e) {
    ThrowInput("{}: not a kvq needle result: {}", where, JsonErrorText(e));
  }
  r.cells = NeedleCells(r);
  return r;
}

std::string NeedleHeatmapSvg(const NeedleReport& report, const std::string& context) {
  std::vector<svg::Heatmap> panels;
  for (const std::string& strategy : report.strategies) {
    svg::Heatmap m;
    m.title = strategy == "fp16" ? "fp16 (baseline)" : strategy;
    m.x_label = "context length (tokens)";
    m.colour_label = "accuracy";
    m.colour_log = false;
    m.colour_min = 0;
    m.colour_max = 1;
    for (int64_t length : report.options.lengths) m.cols.push_back(std::to_string(length));
    for (double depth : report.options.depths) {
      m.rows.push_back(fmt::format("{}%", depth));
      m.values.emplace_back();
      m.tips.emplace_back();
      for (int64_t length : report.options.lengths) {
        const auto cell =
            std::find_if(report.cells.begin(), report.cells.end(), [&](const NeedleCell& c) {
              return c.strategy == strategy && c.length == length && c.depth == depth;
            });
        KVQ_CHECK(cell != report.cells.end());
        m.values.back().push_back(cell->accuracy);
        m.tips.back().push_back(fmt::format("{}: {} tokens, depth {}%: {}/{} correct", strategy,
                                            length, depth, cell->correct, cell->trials));
      }
    }
    m.cell_width = 44;
    panels.push_back(std::move(m));
  }
  return svg::RenderHeatmapPanels(
      "Passkey retrieval accuracy (rows: depth of the key in the filler)",
      fmt::format("{}{}{} seed{} per cell, greedy", context, context.empty() ? "" : "; ",
                  report.options.seeds, report.options.seeds == 1 ? "" : "s"),
      panels);
}

}  // namespace kvq
