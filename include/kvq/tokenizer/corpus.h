#pragma once
// Evaluation text: the two corpora shipped under data/ and user files, turned
// into token ids by a fixed, documented assembly (docs/corpora.md).
//
//   "wikitext"  data/wikitext-2-raw-v1/wiki.test.raw, rows joined the GPTQ
//               way: "\n\n".join(rows), whitespace-only rows as "".
//   "c4"        data/c4-en-validation/...first1000.jsonl.gz: documents in
//               file order, each text += " " + doc["text"].strip().
//   a path      .jsonl / .json (optionally .gz): documents as for "c4";
//               any other file (optionally .gz): its text as it is.
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "kvq/tokenizer/tokenizer.h"

namespace kvq {

// The folder of shipped data (corpora, tokenizer): the first of
// <exe dir>/../share/kvq/data, <exe dir>/data, <exe dir>/../../data that
// holds the corpora, else the source tree's data/ recorded at build time.
std::filesystem::path DataDir();

// Where a corpus name or path points: the built-in names map into DataDir().
// Throws InputError when `name_or_path` is neither a built-in name nor an
// existing file.
std::filesystem::path CorpusFile(std::string_view name_or_path);

// The whole assembled text of a corpus (every document, every row).
std::string CorpusText(std::string_view name_or_path);

// The first `tokens` ids of the corpus, no special tokens added. Equal to
// the first `tokens` ids of tokenizer.Encode(CorpusText(corpus)); for
// documents (c4) it follows the reference protocol literally: documents are
// added until the text exceeds 500,000 characters (then more, doubling, while
// that text has fewer than `tokens` ids), the text is encoded once and cut.
// For plain text only as much as needed is encoded, in pieces cut where the
// pre-tokenizer always splits. Throws InputError naming the corpus when it
// has fewer ids than requested, or when `tokens` is not positive.
std::vector<int32_t> CorpusTokens(const Tokenizer& tokenizer, std::string_view corpus,
                                  int64_t tokens);

// Python's str.strip(): removes leading and trailing characters for which
// str.isspace() is true (Unicode bidi classes WS, B, S and category Zs).
// `text` must be valid UTF-8.
std::string_view PythonStrip(std::string_view text);

}  // namespace kvq
