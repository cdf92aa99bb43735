// `kvq tokenize`: text -> token ids (or ids -> text with --decode) with a
// Hugging Face tokenizer.json; also the first N ids of a corpus.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "command.h"
#include "kvq/common/error.h"
#include "kvq/common/io.h"
#include "kvq/common/json.h"
#include "kvq/tokenizer/corpus.h"
#include "kvq/tokenizer/tokenizer.h"

namespace kvq::cli {
namespace {

struct Options {
  std::string tokenizer;
  std::string text;
  std::string file;
  std::string corpus;
  int64_t tokens = 0;
  bool json = false;
  bool decode = false;
  // Which source was given (an empty --text "" is a valid text).
  const CLI::Option* text_option = nullptr;
  const CLI::Option* file_option = nullptr;
  const CLI::Option* corpus_option = nullptr;
};

// Ids as written by `kvq tokenize`: integers separated by spaces, commas or
// newlines, optionally in [ ], or the --json form {"ids": [...]}.
std::vector<int32_t> ParseIds(const std::string& input, const std::string& origin) {
  std::vector<int32_t> ids;
  const size_t first = input.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && input[first] == '{') {
    try {
      // Each id checked before narrowing: a float or a huge integer is refused.
      const auto json = ParseJson(input, origin);
      if (!json.is_object() || !json.contains("ids") || !json["ids"].is_array()) {
        ThrowInput("{}: expected {{\"ids\": [...]}}", origin);
      }
      for (const auto& id : json["ids"]) {
        if (!id.is_number_integer() || id.get<int64_t>() < INT32_MIN ||
            id.get<int64_t>() > INT32_MAX) {
          ThrowInput("{}: '{}' is not a token id", origin, id.dump());
        }
        ids.push_back(id.get<int32_t>());
      }
      return ids;
    } catch (const nlohmann::json::exception& e) {
      ThrowInput("{}: expected {{\"ids\": [...]}}: {}", origin, e.what());
    }
  }
  size_t pos = 0;
  while (pos < input.size()) {
    const char c = input[pos];
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == ',' || c == '[' || c == ']') {
      ++pos;
      continue;
    }
    size_t end = pos;
    while (end < input.size() && input.find_first_of(" \t\r\n,[]", end) != end) ++end;
    const std::string word = input.substr(pos, end - pos);
    size_t used = 0;
    long long value = 0;
    try {
      value = std::stoll(word, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != word.size() || value < INT32_MIN || value > INT32_MAX) {
      ThrowInput("{}: '{}' is not a token id", origin, word);
    }
    ids.push_back(static_cast<int32_t>(value));
    pos = end;
  }
  return ids;
}

void Print(const std::string& text) { std::fwrite(text.data(), 1, text.size(), stdout); }

void PrintIds(const std::vector<int32_t>& ids, bool json) {
  fmt::memory_buffer out;
  if (json) {
    fmt::format_to(std::back_inserter(out), "{{\"ids\": [{}]}}\n", fmt::join(ids, ", "));
  } else {
    fmt::format_to(std::back_inserter(out), "{}\n", fmt::join(ids, " "));
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
}

void Run(const Options& options) {
  const bool from_text = options.text_option->count() > 0;
  const bool from_file = options.file_option->count() > 0;
  const bool from_corpus = options.corpus_option->count() > 0;
  if (int{from_text} + int{from_file} + int{from_corpus} != 1) {
    ThrowInput("give exactly one of --text, --file, --corpus");
  }
  if (from_corpus && options.decode) ThrowInput("--decode takes --text or --file, not --corpus");
  if (from_corpus && options.tokens <= 0) ThrowInput("--corpus needs --tokens N (N > 0)");
  const Tokenizer tokenizer = Tokenizer::Load(options.tokenizer);

  if (from_corpus) {
    PrintIds(CorpusTokens(tokenizer, options.corpus, options.tokens), options.json);
    return;
  }
  const std::string input = from_file ? ReadTextFile(options.file) : options.text;
  const std::string origin = from_file ? options.file : std::string("--text");
  if (options.decode) {
    const std::string text = tokenizer.Decode(ParseIds(input, origin));
    Print(options.json ? nlohmann::json{{"text", text}}.dump() + "\n" : text);
    return;
  }
  try {
    PrintIds(tokenizer.Encode(input), options.json);
  } catch (const InputError& e) {
    ThrowInput("{}: {}", origin, e.what());
  }
}

Runner Setup(CLI::App& app) {
  auto options = std::make_shared<Options>();
  app.add_option("--tokenizer", options->tokenizer, "tokenizer.json, or a model folder holding one")
      ->required();
  options->text_option =
      app.add_option("--text", options->text, "Text to encode (with --decode: ids to decode)");
  options->file_option =
      app.add_option("--file", options->file, "File whose bytes to encode (with --decode: ids)");
  options->corpus_option = app.add_option(
      "--corpus", options->corpus,
      "Print the first --tokens ids of a corpus: wikitext, c4 or a file (docs/corpora.md)");
  app.add_option("--tokens", options->tokens, "With --corpus: how many ids");
  app.add_flag("--json", options->json, "Print {\"ids\": [...]} (with --decode: {\"text\": ...})");
  app.add_flag("--decode", options->decode, "Decode ids back to text");
  return [options] { Run(*options); };
}

KVQ_COMMAND("tokenize", "Encode text to token ids (or decode ids) with a tokenizer.json", Setup);

}  // namespace
}  // namespace kvq::cli
