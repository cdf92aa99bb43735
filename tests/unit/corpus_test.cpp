// Corpora: the shipped files, the documented text assembly (checked against
// the digests in the data READMEs) and CorpusTokens against ids computed by
// Hugging Face `tokenizers` 0.22.2 over the whole assembled text
// (tests/data/tokenizer/README.md says how).
#include "kvq/tokenizer/corpus.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <fstream>

#include "kvq/common/error.h"
#include "kvq/common/io.h"
#include "kvq/common/sha256.h"
#include "test_util.h"

namespace kvq {
namespace {

// SHA-256 of the ids as little-endian int32, the form the reference hashes were taken in.
std::string IdsSha256Hex(const std::vector<int32_t>& ids) {
  std::string bytes;
  bytes.reserve(ids.size() * 4);
  for (int32_t id : ids) {
    const auto v = static_cast<uint32_t>(id);
    for (int i = 0; i < 4; ++i) bytes.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
  }
  return Sha256Hex(bytes);
}

using test::RepoDataDir;
using test::ScratchDir;

const Tokenizer& Qwen() {
  static const Tokenizer tokenizer = Tokenizer::Load(RepoDataDir() / "tokenizer/qwen2.5");
  return tokenizer;
}

void WriteFile(const std::filesystem::path& path, std::string_view data) {
  std::ofstream out(path, std::ios::binary);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

void WriteGzip(const std::filesystem::path& path, std::string_view data) {
  gzFile out = gzopen(path.c_str(), "wb");
  ASSERT_NE(out, nullptr);
  ASSERT_EQ(gzwrite(out, data.data(), static_cast<unsigned>(data.size())),
            static_cast<int>(data.size()));
  gzclose(out);
}

template <typename F>
std::string InputErrorOf(F&& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no InputError)";
}

TEST(CorpusTest, ShippedFilesAreTheUpstreamOnes) {
  // Digests from data/*/README.md (the upstream files, byte for byte).
  EXPECT_EQ(Sha256Hex(ReadTextFile(RepoDataDir() / "wikitext-2-raw-v1/wiki.test.raw")),
            "173c87a53759e0201f33e0ccf978e510c2042d7f2cb78229d9a50d79b9e7dd08");
  EXPECT_EQ(Sha256Hex(ReadTextFile(RepoDataDir() / "tokenizer/qwen2.5/tokenizer.json")),
            "9c5ae00e602b8860cbd784ba82a8aa14e8feecec692e7076590d014d7b7fdafa");
}

TEST(CorpusTest, DataDirHoldsTheCorpora) {
  EXPECT_TRUE(std::filesystem::is_regular_file(DataDir() / "wikitext-2-raw-v1/wiki.test.raw"));
  EXPECT_TRUE(std::filesystem::is_regular_file(CorpusFile("c4")));
  EXPECT_EQ(CorpusFile("wikitext"), DataDir() / "wikitext-2-raw-v1/wiki.test.raw");
}

TEST(CorpusTest, WikitextIsTheGptqJoin) {
  // README: "\n\n".join(rows) is 1,296,370 bytes with this SHA-256.
  const std::string text = CorpusText("wikitext");
  EXPECT_EQ(text.size(), 1'296'370u);
  EXPECT_EQ(Sha256Hex(text), "696cca6b65a171b0a358a4be6732cdfdf2dd6164a32e20fd70e3c13fc4dfae83");
  EXPECT_EQ(text.substr(0, 28), "\n\n = Robert Boulter = \n\n\n\n\n ");
}

TEST(CorpusTest, C4IsStrippedDocumentsEachAfterOneSpace) {
  // No C4 document here has surrounding whitespace, so the text minus its
  // first space is ' '.join(texts), whose digest the README gives.
  const std::string text = CorpusText("c4");
  ASSERT_EQ(text[0], ' ');
  EXPECT_EQ(text.size(), 2'174'681u);
  EXPECT_EQ(Sha256Hex(std::string_view(text).substr(1)),
            "673c7d333e07a1cc943833080ca4f701c218f61ed9b8ecad89961738cc33757f");
}

TEST(CorpusTest, Builtin4096TokensMatchReference) {
  // The capture protocol: 4096 tokens of each corpus, no network.
  const auto wikitext = CorpusTokens(Qwen(), "wikitext", 4096);
  ASSERT_EQ(wikitext.size(), 4096u);
  EXPECT_EQ(IdsSha256Hex(wikitext),
            "04e38430c7007541a5c73f7f55f5c38021e1b507cf955c2762653b3d974a67fa");
  EXPECT_EQ(std::vector<int32_t>(wikitext.begin(), wikitext.begin() + 8),
            (std::vector<int32_t>{271, 284, 8397, 425, 10965, 465, 284, 76325}));
  const auto c4 = CorpusTokens(Qwen(), "c4", 4096);
  ASSERT_EQ(c4.size(), 4096u);
  EXPECT_EQ(IdsSha256Hex(c4), "99859a10277b74b5387d83aaac62f4fef7aba20620062f131eb1b64224d9d97f");
  EXPECT_EQ(std::vector<int32_t>(c4.begin(), c4.begin() + 8),
            (std::vector<int32_t>{576, 5220, 879, 8469, 1283, 15679, 504, 264}));
}

TEST(CorpusTest, WholeCorporaMatchReference) {
  // Whole wikitext join: 299,078 ids. C4: 109,659 ids is the whole
  // 500,000-character reference text (233 documents); 469,864 ids needs all
  // 1,000 documents, so the text is extended twice.
  EXPECT_EQ(IdsSha256Hex(CorpusTokens(Qwen(), "wikitext", 299'078)),
            "b44603066a92719a20e2dc18d6c5f7f5342b1877c20c1e2bdd92deca662d3d56");
  EXPECT_EQ(IdsSha256Hex(CorpusTokens(Qwen(), "c4", 109'659)),
            "04c98b9add32e84e453627813d7ebdedfc73bd244ddb62160db55976269d41c7");
  EXPECT_EQ(IdsSha256Hex(CorpusTokens(Qwen(), "c4", 469'864)),
            "d65717f8eee14130a85d683e755505377439d298a41a66361ada7d750a95addb");
}

TEST(CorpusTest, RawWikitextFileAsPlainText) {
  // A path is read as it is (llama.cpp's convention for wiki.test.raw):
  // 299,078 ids, whole or in pieces.
  const std::string raw = (RepoDataDir() / "wikitext-2-raw-v1/wiki.test.raw").string();
  const std::string expected = "8557ef42be22a592e5f1704026fedbedc937b484e52f517add9f478adc0de20f";
  EXPECT_EQ(IdsSha256Hex(Qwen().Encode(ReadTextFile(raw))), expected);
  EXPECT_EQ(IdsSha256Hex(CorpusTokens(Qwen(), raw, 299'078)), expected);
  EXPECT_EQ(IdsSha256Hex(CorpusTokens(Qwen(), raw, 4096)),
            "9c3c32f0d6b71060b2826639e574e53a3a746046426d1ae0bfb7c5f3f3be9026");
}

TEST(CorpusTest, PiecewiseWikitextEqualsPrefixOfWholeEncoding) {
  const std::vector<int32_t> whole = Qwen().Encode(CorpusText("wikitext"));
  ASSERT_EQ(whole.size(), 299'078u);
  for (int64_t n : {1, 7, 512, 4096, 5000, 33'333, 150'000, 299'078}) {
    const auto ids = CorpusTokens(Qwen(), "wikitext", n);
    ASSERT_EQ(ids.size(), static_cast<size_t>(n));
    EXPECT_TRUE(std::equal(ids.begin(), ids.end(), whole.begin())) << n;
  }
}

TEST(CorpusTest, TooFewTokensIsAnInputError) {
  EXPECT_NE(InputErrorOf([] {
              CorpusTokens(Qwen(), "wikitext", 299'079);
            }).find("corpus wikitext has 299078 tokens, fewer than the 299079 requested"),
            std::string::npos);
  EXPECT_NE(InputErrorOf([] { CorpusTokens(Qwen(), "wikitext", 0); }).find("must be positive"),
            std::string::npos);
  EXPECT_NE(InputErrorOf([] {
              CorpusTokens(Qwen(), "no-such-corpus", 10);
            }).find("not a built-in corpus (wikitext, c4) and no such file"),
            std::string::npos);
}

TEST(CorpusTest, UserFiles) {
  ScratchDir dir;
  // Plain text: its bytes as they are (no row joining).
  WriteFile(dir / "a.txt", "Hello world\n\n Hello world");
  EXPECT_EQ(CorpusText((dir / "a.txt").string()), "Hello world\n\n Hello world");
  EXPECT_EQ(CorpusTokens(Qwen(), (dir / "a.txt").string(), 2), (std::vector<int32_t>{9707, 1879}));

  // JSON lines, plain and gzipped: " " + strip(text) per document.
  const std::string lines =
      "{\"text\": \"  Hello world\\n\", \"url\": \"x\"}\n\n{\"text\": \"The quick brown fox\"}\n";
  WriteFile(dir / "d.jsonl", lines);
  WriteGzip(dir / "d.json.gz", lines);
  for (const char* name : {"d.jsonl", "d.json.gz"}) {
    const std::string path = (dir / name).string();
    EXPECT_EQ(CorpusText(path), " Hello world The quick brown fox") << name;
    EXPECT_EQ(CorpusTokens(Qwen(), path, 3), Qwen().Encode(" Hello world The")) << name;
    EXPECT_NE(InputErrorOf([&] { CorpusTokens(Qwen(), path, 100); }).find("fewer than the 100"),
              std::string::npos);
  }

  WriteFile(dir / "bad.jsonl", "{\"text\": \"ok\"}\n{\"body\": \"no text\"}\n");
  EXPECT_NE(InputErrorOf([&] {
              CorpusText((dir / "bad.jsonl").string());
            }).find("bad.jsonl:2: no \"text\" string field"),
            std::string::npos);
  WriteFile(dir / "broken.jsonl", "{\"text\": \n");
  EXPECT_NE(InputErrorOf([&] {
              CorpusText((dir / "broken.jsonl").string());
            }).find("broken.jsonl:1: not a JSON object"),
            std::string::npos);
  WriteFile(dir / "latin1.txt", "caf\xE9 au lait");
  EXPECT_NE(InputErrorOf([&] {
              CorpusText((dir / "latin1.txt").string());
            }).find("not valid UTF-8 (byte 0xE9 at offset 3"),
            std::string::npos);
}

TEST(CorpusTest, PythonStripSemantics) {
  EXPECT_EQ(PythonStrip(" \t\n\x0b\x0c\r\x1c\x1d\x1e\x1f x y \xC2\x85\xC2\xA0"), "x y");
  // U+3000, U+2028, U+1680 are whitespace; U+FEFF and U+200B are not.
  EXPECT_EQ(PythonStrip("\xE3\x80\x80\xE2\x80\xA8\xE1\x9A\x80z"), "z");
  EXPECT_EQ(PythonStrip("\xEF\xBB\xBFz\xE2\x80\x8B"), "\xEF\xBB\xBFz\xE2\x80\x8B");
  EXPECT_EQ(PythonStrip("   "), "");
  EXPECT_EQ(PythonStrip(""), "");
}

}  // namespace
}  // namespace kvq
