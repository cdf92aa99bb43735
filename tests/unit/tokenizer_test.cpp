// Tokenizer: exact ids against Hugging Face `tokenizers` (fixtures produced
// by the Rust crate), round trips, added tokens, bad input and speed limits.
#include "kvq/tokenizer/tokenizer.h"

#include <gtest/gtest.h>
#include <utf8proc.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "kvq/common/error.h"
#include "kvq/common/io.h"
#include "kvq/common/random.h"
#include "test_util.h"
#include "tokenizer/bpe.h"
#include "tokenizer/normalize.h"
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

// Fuzz draws: uniform in [0, n) up to a modulo bias these tests do not mind.
uint32_t Below(SplitMix64& rng, uint32_t n) { return static_cast<uint32_t>(rng.Next() % n); }

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

TEST(TokenizerTest, InvalidUtf8NamesTheByteOffset) {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"abc\xC3(", "byte 0xC3 at byte offset 3"},          // truncated 2-byte sequence
      {"\xC0\xAF", "byte 0xC0 at byte offset 0"},          // overlong '/'
      {"ok \xED\xA0\x80", "byte 0xED at byte offset 3"},   // UTF-16 surrogate
      {"\xF4\x90\x80\x80", "byte 0xF4 at byte offset 0"},  // above U+10FFFF
      {"12345678\x80", "byte 0x80 at byte offset 8"},      // stray continuation
      {"\xE4\xB8", "byte 0xE4 at byte offset 0"},          // cut at the end
  };
  for (const auto& [text, message] : bad) {
    try {
      Qwen().Encode(text);
      ADD_FAILURE() << "no error for " << message;
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << e.what();
    }
  }
}

// Reference validator for the fuzz test, written from Unicode Table 3-7
// differently from utf8.cpp: decode the scalar value, then check its range.
size_t ReferenceFirstInvalid(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const auto b0 = static_cast<uint8_t>(s[i]);
    size_t n = b0 < 0x80 ? 1 : (b0 >> 5) == 6 ? 2 : (b0 >> 4) == 14 ? 3 : (b0 >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return i;
    uint32_t cp = n == 1 ? b0 : n == 2 ? (b0 & 0x1F) : n == 3 ? (b0 & 0x0F) : (b0 & 0x07);
    for (size_t k = 1; k < n; ++k) {
      const auto b = static_cast<uint8_t>(s[i + k]);
      if ((b & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (b & 0x3F);
    }
    const uint32_t min = n == 1 ? 0 : n == 2 ? 0x80 : n == 3 ? 0x800 : 0x10000;
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
    i += n;
  }
  return utf8::kValid;
}

TEST(TokenizerTest, FuzzRandomBytesGiveIdsOrInputError) {
  SplitMix64 rng(42);
  const char* pool[] = {"a",     " ",        "\n",           "<|endoftext|>",
                        "<|im_", "\xC3\xA9", "\xE4\xB8\xAD", "\xF0\x9F\x98\x80",
                        "'s",    "1"};
  for (int iteration = 0; iteration < 3000; ++iteration) {
    std::string text;
    const uint32_t length = Below(rng, 64);
    for (uint32_t i = 0; i < length; ++i) {
      if (Below(rng, 3) == 0) {
        text += pool[Below(rng, 10)];
      } else {
        text.push_back(static_cast<char>(Below(rng, 256)));
      }
    }
    const size_t expected_bad = ReferenceFirstInvalid(text);
    ASSERT_EQ(utf8::FindInvalid(text), expected_bad) << Printable(text);
    try {
      const auto ids = Qwen().Encode(text);
      ASSERT_EQ(expected_bad, utf8::kValid);
      ASSERT_EQ(Qwen().Decode(ids), Nfc(text));
    } catch (const InputError& e) {
      ASSERT_NE(expected_bad, utf8::kValid);
      ASSERT_NE(std::string(e.what()).find(fmt::format("byte offset {}", expected_bad)),
                std::string::npos)
          << e.what();
    }
  }
}

TEST(TokenizerTest, FuzzRandomUnicodeRoundTrips) {
  SplitMix64 rng(7);
  for (int iteration = 0; iteration < 2000; ++iteration) {
    std::string text;
    const uint32_t length = 1 + Below(rng, 40);
    for (uint32_t i = 0; i < length; ++i) {
      uint32_t cp;
      switch (Below(rng, 4)) {
        case 0:
          cp = Below(rng, 0x80);
          break;  // ASCII, controls and NUL included
        case 1:
          cp = 0x80 + Below(rng, 0x3000);
          break;  // Latin .. combining marks .. symbols
        case 2:
          cp = Below(rng, 0x10000);
          break;  // the whole BMP
        default:
          cp = Below(rng, 0x110000);
          break;  // every plane
      }
      if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD;
      utf8::Append(text, cp);
    }
    const auto ids = Qwen().Encode(text);
    for (int32_t id : ids) ASSERT_TRUE(id >= 0 && id < Qwen().vocab_size());
    ASSERT_EQ(Qwen().Decode(ids), Nfc(text)) << Printable(text);
  }
}

TEST(TokenizerTest, StretchwiseNfcEqualsWholeTextNfc) {
  // Text dense in what NFC changes: combining marks (reordered, composed),
  // Hangul jamo, singletons, CJK ideographs next to marks, ASCII bases.
  const std::vector<uint32_t> pool = {'a',    'e',    'A',    ' ',    0x0301, 0x0308, 0x0323,
                                      0x0328, 0x0345, 0x1100, 0x1161, 0x11A8, 0xAC00, 0x212B,
                                      0x2126, 0x4E00, 0x9FFF, 0x3099, 0x304B, 0x30AB, 0x0F73,
                                      0xF900, 0x00E9, 0x1E9B, 0x05B0, 0x0591, 0x0CD5, 0x0CBF};
  SplitMix64 rng(5);
  std::string storage;
  for (int iteration = 0; iteration < 5000; ++iteration) {
    std::string text;
    const uint32_t length = 1 + Below(rng, 24);
    for (uint32_t i = 0; i < length; ++i) {
      utf8::Append(text, pool[Below(rng, static_cast<uint32_t>(pool.size()))]);
    }
    ASSERT_EQ(std::string(kvq::Nfc(text, storage)), Nfc(text)) << Printable(text);
  }
}

TEST(TokenizerTest, LongWordsAreNotQuadratic) {
  // 100,000 repeats of one character: one piece each, merged by the heap.
  // Quadratic merging would take minutes; the bound leaves room for a loaded
  // machine and for ASan, which slows the encoder several times.
#if defined(__SANITIZE_ADDRESS__)
  constexpr double kBoundSeconds = 10.0;
#else
  constexpr double kBoundSeconds = 2.0;
#endif
  for (const std::string unit : {"a", " ", "\xE4\xB8\xAD", "ab", "\n", "7"}) {
    std::string text;
    for (int i = 0; i < 100'000; ++i) text += unit;
    const auto start = std::chrono::steady_clock::now();
    const auto ids = Qwen().Encode(text);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_LT(seconds, kBoundSeconds) << Printable(unit);
    EXPECT_EQ(Qwen().Decode(ids), text);
  }
}

TEST(TokenizerTest, HeapAndScanMergeAlike) {
  // A random merge table over a 6-symbol alphabet; merged tokens get fresh
  // ids so later merges can build on them.
  SplitMix64 rng(99);
  bpe::MergeTable merges;
  int32_t next_id = 6;
  std::vector<int32_t> known = {0, 1, 2, 3, 4, 5};
  for (int32_t rank = 0; rank < 200; ++rank) {
    const int32_t left = known[Below(rng, static_cast<uint32_t>(known.size()))];
    const int32_t right = known[Below(rng, static_cast<uint32_t>(known.size()))];
    if (merges.Find(left, right) != nullptr) continue;
    merges.Insert(left, right, {rank, next_id});
    known.push_back(next_id++);
  }
  for (int iteration = 0; iteration < 2000; ++iteration) {
    std::vector<int32_t> symbols(1 + Below(rng, 120));
    for (auto& s : symbols) s = static_cast<int32_t>(Below(rng, 6));
    std::vector<int32_t> by_scan = symbols, by_heap = symbols;
    bpe::MergeByScan(merges, by_scan);
    bpe::MergeByHeap(merges, by_heap);
    ASSERT_EQ(by_scan, by_heap);
  }
}

TEST(TokenizerTest, AddedTokensSplitTheRawText) {
  const int32_t eot = 151643, im_start = 151644, im_end = 151645;
  EXPECT_EQ(Qwen().Encode("<|im_start|><|im_end|>"), (std::vector<int32_t>{im_start, im_end}));
  // Text around a token is encoded on its own: " world" keeps its space.
  const auto ids = Qwen().Encode("Hello<|endoftext|> world");
  EXPECT_EQ(ids, (std::vector<int32_t>{9707, eot, 1879}));
  // Almost-tokens are ordinary text.
  for (const char* text : {"<|endoftext|", "<|endoftext >", "<think>", "<|IM_START|>"}) {
    const auto plain = Qwen().Encode(text);
    for (int32_t id : plain) EXPECT_LT(id, eot) << text;
    EXPECT_EQ(Qwen().Decode(plain), text);
  }
  // Raw matching happens before NFC: the combining accent after a token does
  // not compose with the "e" before it.
  EXPECT_EQ(Qwen().Decode(Qwen().Encode("e<|endoftext|>\xCC\x81")), "e<|endoftext|>\xCC\x81");
}

TEST(TokenizerTest, DecodeIsLossyLikeRust) {
  const int32_t e4 = *Qwen().TokenId("\xE4");  // one byte of a 3-byte sequence
  const int32_t b8 = *Qwen().TokenId("\xB8");
  const int32_t a = *Qwen().TokenId("a");
  EXPECT_EQ(Qwen().Decode(std::vector<int32_t>{e4, b8, a}),
            "\xEF\xBF\xBD"
            "a");
  EXPECT_EQ(Qwen().Decode(std::vector<int32_t>{b8, b8}), "\xEF\xBF\xBD\xEF\xBF\xBD");
  const int32_t f0 = *Qwen().TokenId("\xF0"), x80 = *Qwen().TokenId("\x80");
  // F0 80: 80 cannot follow F0 (overlong), so each byte is its own subpart.
  EXPECT_EQ(Qwen().Decode(std::vector<int32_t>{f0, x80, x80}),
            "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(Qwen().Decode(std::vector<int32_t>{}), "");
  try {
    Qwen().Decode(std::vector<int32_t>{9707, 151665});
    ADD_FAILURE();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("token id 151665 is not in the vocabulary"),
              std::string::npos);
  }
  EXPECT_THROW(Qwen().Decode(std::vector<int32_t>{-1}), InputError);
}

// ---- Synthetic tokenizer.json files: loader variants and refusals. ----

// GPT-2's bytes_to_unicode, for building vocabularies in the tests.
std::string ByteLevelChar(int byte) {
  uint32_t cp;
  if ((byte >= 0x21 && byte <= 0x7E) || (byte >= 0xA1 && byte <= 0xAC) || (byte >= 0xAE)) {
    cp = static_cast<uint32_t>(byte);
  } else {
    int rank = 0;  // how many unprintable bytes come before this one
    for (int b = 0; b < byte; ++b) {
      if (!((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE)) ++rank;
    }
    cp = 256 + static_cast<uint32_t>(rank);
  }
  std::string out;
  utf8::Append(out, cp);
  return out;
}

// 256 byte tokens (ids 0-255), merges "a b" -> "ab" (256), "ab c" -> "abc"
// (257), "Ġ a" -> "Ġa" (258); added tokens "<x>" (300) and "<x>y" (301).
nlohmann::json SyntheticTokenizer() {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[ByteLevelChar(b)] = b;
  vocab["ab"] = 256;
  vocab["abc"] = 257;
  vocab
      ["\xC4\xA0"
       "a"] = 258;
  using nlohmann::json;
  json added = json::array();
  added.push_back({{"id", 300}, {"content", "<x>"}, {"special", true}, {"normalized", false}});
  added.push_back({{"id", 301}, {"content", "<x>y"}, {"special", false}, {"normalized", false}});
  json split = {{"type", "Split"},
                {"pattern", {{"Regex", "\\p{L}+|\\s+|[^\\s\\p{L}]+"}}},
                {"behavior", "Isolated"},
                {"invert", false}};
  json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}};
  json merges = json::array();
  merges.push_back(json::array({"a", "b"}));
  merges.push_back(json::array({"ab", "c"}));
  merges.push_back(json::array({"\xC4\xA0", "a"}));
  json j = json::object();
  j["version"] = "1.0";
  j["truncation"] = nullptr;
  j["padding"] = nullptr;
  j["added_tokens"] = added;
  j["normalizer"] = {{"type", "NFC"}};
  j["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", json::array({split, byte_level})}};
  j["post_processor"] = nullptr;
  j["decoder"] = {{"type", "ByteLevel"}};
  j["model"] = {{"type", "BPE"},          {"dropout", nullptr}, {"unk_token", nullptr},
                {"byte_fallback", false}, {"vocab", vocab},     {"merges", merges}};
  return j;
}

Tokenizer FromJson(const nlohmann::json& j) { return Tokenizer::FromJson(j.dump(), "t.json"); }

TEST(TokenizerTest, SyntheticMergesAsPairsOrStrings) {
  nlohmann::json j = SyntheticTokenizer();
  const Tokenizer pairs = FromJson(j);
  j["model"]["merges"] = nlohmann::json::array({"a b", "ab c", "\xC4\xA0 a"});
  const Tokenizer strings = FromJson(j);
  for (const Tokenizer* t : {&pairs, &strings}) {
    EXPECT_EQ(t->Encode("abc"), (std::vector<int32_t>{257}));
    EXPECT_EQ(t->Encode("abab a"), (std::vector<int32_t>{256, 256, 32, 'a'}));
    EXPECT_EQ(t->vocab_size(), 302);
  }
}

TEST(TokenizerTest, SyntheticAddedTokensLeftmostThenLongest) {
  const Tokenizer t = FromJson(SyntheticTokenizer());
  EXPECT_EQ(t.Encode("<x>y"), (std::vector<int32_t>{301}));
  EXPECT_EQ(t.Encode("<x>z"), (std::vector<int32_t>{300, 'z'}));
  EXPECT_EQ(t.Encode("a<x><x>yb"), (std::vector<int32_t>{'a', 300, 301, 'b'}));
  EXPECT_EQ(t.Decode(std::vector<int32_t>{300, 301}), "<x><x>y");
  EXPECT_EQ(t.added_tokens().size(), 2u);
  EXPECT_TRUE(t.added_tokens()[0].special);
}

// ---- Added tokens against a scalar reference of Hugging Face's rule. ----

struct Added {
  std::string content;
  int32_t id;
};

// The rule spelled out: from the left, at each position the longest added
// token that starts there (among equal contents the first in the file);
// after a match the search resumes at its end. The text between matches is
// encoded by `t` (it holds no added token, so `t`'s matcher finds none).
std::vector<int32_t> ReferenceEncode(const Tokenizer& t, const std::vector<Added>& added,
                                     std::string_view text) {
  std::unordered_map<std::string, int32_t> first_id;
  size_t longest = 0;
  for (const Added& a : added) {
    if (a.content.empty()) continue;
    first_id.emplace(a.content, a.id);
    longest = std::max(longest, a.content.size());
  }
  std::vector<int32_t> ids;
  const auto encode_stretch = [&](size_t begin, size_t end) {
    if (end == begin) return;
    const std::vector<int32_t> stretch = t.Encode(text.substr(begin, end - begin));
    ids.insert(ids.end(), stretch.begin(), stretch.end());
  };
  size_t stretch_begin = 0;
  for (size_t i = 0; i < text.size();) {
    bool matched = false;
    for (size_t length = std::min(longest, text.size() - i); length > 0 && !matched; --length) {
      const auto it = first_id.find(std::string(text.substr(i, length)));
      if (it == first_id.end()) continue;
      encode_stretch(stretch_begin, i);
      ids.push_back(it->second);
      i += length;
      stretch_begin = i;
      matched = true;
    }
    if (!matched) ++i;
  }
  encode_stretch(stretch_begin, text.size());
  return ids;
}

// The synthetic tokenizer with `added` as its added tokens (ids from 302).
nlohmann::json WithAddedTokens(const std::vector<Added>& added) {
  nlohmann::json j = SyntheticTokenizer();
  j["added_tokens"] = nlohmann::json::array();
  for (const Added& a : added) {
    j["added_tokens"].push_back(
        {{"id", a.id}, {"content", a.content}, {"special", false}, {"normalized", false}});
  }
  return j;
}

std::string RandomString(SplitMix64& rng, std::string_view alphabet, size_t length) {
  std::string s(length, ' ');
  for (char& c : s) c = alphabet[rng.Next() % alphabet.size()];
  return s;
}

// Tokens that are prefixes, suffixes and infixes of one another, and the
// same content twice under two ids, over a four-letter alphabet, so that
// nearly every position of the text starts several candidates.
TEST(TokenizerTest, OverlappingAddedTokensMatchTheScalarRule) {
  SplitMix64 rng(20);
  std::vector<Added> added;
  const auto add = [&](std::string content) {
    added.push_back({std::move(content), 302 + static_cast<int32_t>(added.size())});
  };
  for (int base = 0; base < 40; ++base) {
    const std::string word = RandomString(rng, "abc<", 2 + rng.Next() % 9);
    for (size_t cut = 1; cut < word.size(); cut += 1 + rng.Next() % 3) {
      add(word.substr(0, cut));
      add(word.substr(cut));
    }
    add(word);
    add(word.substr(1, word.size() / 2));
  }
  add(added[3].content);  // a duplicate: the first id must win
  add(added[0].content);
  const Tokenizer t = FromJson(WithAddedTokens(added));
  for (int trial = 0; trial < 50; ++trial) {
    const std::string text = RandomString(rng, "abc< x", 1 + rng.Next() % 400);
    SCOPED_TRACE(text);
    ASSERT_EQ(t.Encode(text), ReferenceEncode(t, added, text));
  }
  // Hand-checked cases on the fixed tokens of the synthetic file.
  const std::vector<Added> fixed{{"<x>", 300}, {"<x>y", 301}};
  const Tokenizer synthetic = FromJson(SyntheticTokenizer());
  for (const char* text : {"<x>y", "<x>z", "a<x><x>yb", "<x<x>y>", ""}) {
    EXPECT_EQ(synthetic.Encode(text), ReferenceEncode(synthetic, fixed, text)) << text;
  }
}

// 200,000 added tokens: loading and encoding take time linear in the file
// and the text (a matcher that tried every token at every position would
// take hours here), and the ids follow the rule.
TEST(TokenizerTest, ManyAddedTokensLoadAndEncodeInLinearTime) {
  SplitMix64 rng(21);
  std::vector<Added> added;
  for (int i = 0; i < 200000; ++i) {
    added.push_back({RandomString(rng, "abcdefghijklmnop", 3 + rng.Next() % 8), 302 + i});
  }
  const std::string file = WithAddedTokens(added).dump();
  std::string text;
  while (text.size() < 100000) text += RandomString(rng, "abcdefghijklmnopqrstuvwxyz <>", 64);
  const auto start = std::chrono::steady_clock::now();
  const Tokenizer t = Tokenizer::FromJson(file, "many.json");
  const std::vector<int32_t> ids = t.Encode(text);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(ids, ReferenceEncode(t, added, text));
  EXPECT_EQ(t.added_tokens().size(), added.size());
  EXPECT_EQ(t.Decode(ids), text);
  // Under a second of CPU here (docs/tokenizer.md); the bound leaves room for
  // a loaded machine and sanitizers while still failing a quadratic matcher
  // by far.
  EXPECT_LT(seconds, 20.0);

  // A long token that fails only at its last byte, over a text of its
  // first byte: a matcher that walks forward from every position does 10^9
  // steps here.
  const std::vector<Added> adversarial{{std::string(10000, 'a') + "b", 302}, {"a", 303}};
  const Tokenizer a = FromJson(WithAddedTokens(adversarial));
  const auto adversarial_start = std::chrono::steady_clock::now();
  EXPECT_EQ(a.Encode(std::string(100000, 'a')), std::vector<int32_t>(100000, 303));
  std::vector<int32_t> expected(90000, 303);  // "a" until the long token fits
  expected.push_back(302);
  EXPECT_EQ(a.Encode(std::string(100000, 'a') + "b"), expected);
  EXPECT_LT(std::chrono::steady_clock::now() - adversarial_start, std::chrono::seconds(5));
}

TEST(TokenizerTest, SyntheticGpt2RegexWhenByteLevelUsesRegex) {
  nlohmann::json j = SyntheticTokenizer();
  j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
  const Tokenizer t = FromJson(j);
  // GPT-2's " ?\p{L}+" keeps the space with the word: "Ġa" merges.
  EXPECT_EQ(t.Encode(" a"), (std::vector<int32_t>{258}));
}

TEST(TokenizerTest, UnsupportedConfigurationsAreRefusedByName) {
  const std::vector<std::pair<std::function<void(nlohmann::json&)>, std::string>> edits = {
      {[](auto& j) {
         j["normalizer"] = {{"type", "NFKC"}};
       },
       "normalizer.type = \"NFKC\""},
      {[](auto& j) { j["pre_tokenizer"]["pretokenizers"][1]["add_prefix_space"] = true; },
       "pre_tokenizer.pretokenizers[1].add_prefix_space = true"},
      {[](auto& j) { j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Removed"; },
       "pre_tokenizer.pretokenizers[0].behavior = \"Removed\""},
      {[](auto& j) { j["pre_tokenizer"]["pretokenizers"][0]["type"] = "Whitespace"; },
       "pre_tokenizer.pretokenizers[0].type = \"Whitespace\""},
      {[](auto& j) { j["pre_tokenizer"] = nullptr; }, "pre_tokenizer = null"},
      {[](auto& j) { j["model"]["type"] = "WordPiece"; }, "model.type = \"WordPiece\""},
      {[](auto& j) { j["model"]["byte_fallback"] = true; }, "model.byte_fallback = true"},
      {[](auto& j) { j["model"]["dropout"] = 0.1; }, "model.dropout = 0.1"},
      {[](auto& j) { j["model"]["continuing_subword_prefix"] = "##"; },
       "model.continuing_subword_prefix = \"##\""},
      {[](auto& j) { j["added_tokens"][0]["lstrip"] = true; }, "added_tokens[0].lstrip = true"},
      {[](auto& j) { j["added_tokens"][1]["normalized"] = true; },
       "added_tokens[1].normalized = true"},
      {[](auto& j) {
         j["decoder"] = {{"type", "WordPiece"}};
       },
       "decoder.type = \"WordPiece\""},
      {[](auto& j) {
         j["truncation"] = {{"max_length", 512}};
       },
       "truncation = "},
      {[](auto& j) { j["model"]["merges"][1] = "ab c d"; },
       "model.merges[1] = \"ab c d\" is not two tokens separated by one space"},
      {[](auto& j) {
         j["model"]["merges"][0] = nlohmann::json::array({"a", "zz"});
       },
       "model.merges[0] = [\"a\",\"zz\"]: \"zz\" is not in model.vocab"},
      {[](auto& j) { j["model"]["vocab"].erase(ByteLevelChar(0x0A)); },
       "model.vocab has no token for byte 0x0A"},
      {[](auto& j) { j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(a"; },
       "pre_tokenizer.pretokenizers[0].pattern: pre-tokenizer regex rejected by PCRE2"},
  };
  for (const auto& [edit, message] : edits) {
    nlohmann::json j = SyntheticTokenizer();
    edit(j);
    try {
      FromJson(j);
      ADD_FAILURE() << "accepted: " << message;
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("t.json: " + message), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(Tokenizer::FromJson("{not json", "t.json"), InputError);
  EXPECT_THROW(Tokenizer::Load(DataDir() / "no-such-folder"), InputError);
}

TEST(TokenizerTest, OnigurumaWhitespaceRewrite) {
  EXPECT_EQ(OnigurumaToPcre2(R"(\s+(?!\S)|[^\s\p{L}]|\\s)", "p"),
            R"([\t-\r\x{85}\p{Z}]+(?![^\t-\r\x{85}\p{Z}])|[^\t-\r\x{85}\p{Z}\p{L}]|\\s)");
  EXPECT_EQ(OnigurumaToPcre2(R"([]\s]x[^]a])", "p"), R"([]\t-\r\x{85}\p{Z}]x[^]a])");
  EXPECT_THROW(OnigurumaToPcre2(R"([\S])", "p"), InputError);
}

// ---- The CLI ----

TEST(TokenizerTest, CliEncodeDecode) {
  const std::string tok = "--tokenizer " + (RepoDataDir() / "tokenizer/qwen2.5").string();
  auto r = test::RunKvq("tokenize " + tok + " --text 'Hello world'");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, "9707 1879\n");
  r = test::RunKvq("tokenize " + tok + " --json --text 'Hello<|endoftext|>'");
  EXPECT_EQ(r.output, "{\"ids\": [9707, 151643]}\n");
  r = test::RunKvq("tokenize " + tok + " --decode --text '9707, 1879'");
  EXPECT_EQ(r.output, "Hello world");
  r = test::RunKvq("tokenize " + tok + " --decode --json --text '{\"ids\": [9707, 1879]}'");
  EXPECT_EQ(r.output, "{\"text\":\"Hello world\"}\n");
  r = test::RunKvq("tokenize " + tok + " --text ''");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.output, "\n");

  test::ScratchDir dir;
  std::ofstream(dir / "in.txt") << "The quick brown fox jumps over the lazy dog.";
  r = test::RunKvq("tokenize " + tok + " --file " + (dir / "in.txt").string());
  EXPECT_EQ(r.output, "785 3974 13876 38835 34208 916 279 15678 5562 13\n");
  r = test::RunKvq("tokenize " + tok + " --corpus c4 --tokens 3");
  EXPECT_EQ(r.output, "576 5220 879\n");
}

TEST(TokenizerTest, CliBadInputExitsTwo) {
  const std::string tok = "--tokenizer " + (RepoDataDir() / "tokenizer/qwen2.5").string();
  test::ScratchDir dir;
  std::ofstream(dir / "bad.txt") << "ok \xFF";
  auto r = test::RunKvq("tokenize " + tok + " --file " + (dir / "bad.txt").string());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("bad.txt: text is not valid UTF-8: byte 0xFF at byte offset 3"),
            std::string::npos)
      << r.output;
  r = test::RunKvq("tokenize " + tok + " --decode --text '1 2 x'");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("'x' is not a token id"), std::string::npos) << r.output;
  r = test::RunKvq("tokenize " + tok + " --decode --text '999999'");
  EXPECT_EQ(r.exit_code, 2);
  r = test::RunKvq("tokenize --tokenizer " + dir.path().string() + " --text hi");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("no tokenizer.json in this folder"), std::string::npos) << r.output;
  r = test::RunKvq("tokenize " + tok + " --text a --file b");
  EXPECT_EQ(r.exit_code, 2);
  r = test::RunKvq("tokenize " + tok + " --corpus wikitext");
  EXPECT_EQ(r.exit_code, 2);
}

}  // namespace
}  // namespace kvq
