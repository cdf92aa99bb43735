// Tokenizer: exact ids against Hugging Face `tokenizers` (fixtures produced
// by the Rust crate), round trips, added tokens, bad input and speed limits.
#include "kvq/tokenizer/tokenizer.h"

#include <gtest/gtest.h>
#include <utf8proc.h>

#include <chrono>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kvq/common/error.h"
#include "kvq/common/io.h"
#include "test_util.h"
#include "tokenizer/bpe.h"
#include "tokenizer/regex.h"
#include "tokenizer/utf8.h"

namespace kvq {
namespace {

using test::DataDir;
using test::RepoDataDir;

// Loading the 11 MB tokenizer.json takes a while: once for the whole binary.
const Tokenizer& Qwen() {
  static const Tokenizer tokenizer = Tokenizer::Load(RepoDataDir() / "tokenizer/qwen2.5");
  return tokenizer;
}

struct Case {
  std::string text;
  std::vector<int32_t> ids;
};

std::vector<Case> ReadCases(const std::filesystem::path& file) {
  std::ifstream in(file);
  std::vector<Case> cases;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const auto record = nlohmann::json::parse(line);
    cases.push_back(
        {record.at("text").get<std::string>(), record.at("ids").get<std::vector<int32_t>>()});
  }
  return cases;
}

std::string Nfc(const std::string& text) {
  utf8proc_uint8_t* out = nullptr;
  const auto n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                              static_cast<utf8proc_ssize_t>(text.size()), &out,
                              static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  EXPECT_GE(n, 0);
  std::string result(reinterpret_cast<char*>(out), static_cast<size_t>(n));
  std::free(out);
  return result;
}

std::string Printable(const std::string& text) { return nlohmann::json(text).dump(); }

// Deterministic generator for the fuzz tests (splitmix64).
struct SplitMix64 {
  uint64_t state;
  uint64_t Next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  uint32_t Below(uint32_t n) { return static_cast<uint32_t>(Next() % n); }
};

TEST(TokenizerTest, FixtureCasesGiveReferenceIds) {
  const auto cases = ReadCases(DataDir() / "tokenizer/cases.jsonl");
  ASSERT_EQ(cases.size(), 45u);
  for (const Case& c : cases) {
    EXPECT_EQ(Qwen().Encode(c.text), c.ids) << Printable(c.text);
    EXPECT_EQ(Qwen().Decode(c.ids), Nfc(c.text)) << Printable(c.text);
  }
}

// Edge cases the fixture does not cover (Unicode whitespace, NFC, added
// tokens next to each other, long words, random strings), with ids from the
// same reference; provenance in tests/data/tokenizer/README.md.
TEST(TokenizerTest, ExtraCasesGiveReferenceIds) {
  const auto cases = ReadCases(DataDir() / "tokenizer/extra_cases.jsonl");
  ASSERT_EQ(cases.size(), 459u);
  for (const Case& c : cases) {
    EXPECT_EQ(Qwen().Encode(c.text), c.ids) << Printable(c.text);
    EXPECT_EQ(Qwen().Decode(c.ids), Nfc(c.text)) << Printable(c.text);
  }
}

TEST(TokenizerTest, LoadsFolderOrFile) {
  EXPECT_EQ(Qwen().vocab_size(), 151665);
  EXPECT_EQ(Qwen().path(), RepoDataDir() / "tokenizer/qwen2.5/tokenizer.json");
  EXPECT_EQ(Qwen().TokenId("<|endoftext|>"), 151643);
  EXPECT_EQ(Qwen().TokenId("<|im_end|>"), 151645);
  EXPECT_EQ(Qwen().TokenId(" the"), 279);  // 'Ġthe' in the byte-level alphabet
  EXPECT_EQ(Qwen().TokenId("no such token here"), std::nullopt);
}

}  // namespace
}  // namespace kvq
