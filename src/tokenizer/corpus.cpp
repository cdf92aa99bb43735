#include "kvq/tokenizer/corpus.h"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <system_error>

#include <nlohmann/json.hpp>

#include "kvq/common/error.h"
#include "kvq/common/io.h"
#include "kvq/common/json.h"
#include "tokenizer/utf8.h"

#ifndef KVQ_DATA_DIR
#error "KVQ_DATA_DIR must name the source tree's data/ folder"
#endif

namespace kvq {
namespace {

constexpr std::string_view kWikitextFile = "wikitext-2-raw-v1/wiki.test.raw";
constexpr std::string_view kC4File =
    "c4-en-validation/c4-validation.00000-of-00008.first1000.jsonl.gz";

// The reference C4 protocol adds documents until the text is longer than
// this many characters (code points), then encodes it once.
constexpr size_t kDocumentMinChars = 500'000;

bool EndsWith(std::string_view text, std::string_view suffix) {
  return text.size() >= suffix.size() && text.substr(text.size() - suffix.size()) == suffix;
}

bool IsDocumentFile(const std::filesystem::path& file) {
  std::string name = file.filename().string();
  if (EndsWith(name, ".gz")) name.resize(name.size() - 3);
  return EndsWith(name, ".jsonl") || EndsWith(name, ".json");
}

// Whole file, through zlib so that .gz files are inflated (gzread passes
// other files through unchanged).
std::string ReadMaybeGzipped(const std::filesystem::path& file) {
  // A FIFO or device would block gzopen or never end: refused by name.
  std::error_code ec;
  const auto status = std::filesystem::status(file, ec);
  if (!ec && status.type() != std::filesystem::file_type::regular) {
    ThrowInput("{}: is {}, not a regular file", file.string(),
               status.type() == std::filesystem::file_type::directory ? "a folder"
               : status.type() == std::filesystem::file_type::fifo    ? "a FIFO"
                                                                      : "a device or socket");
  }
  gzFile in = gzopen(file.c_str(), "rb");
  if (in == nullptr) ThrowInput("{}: cannot open", file.string());
  gzbuffer(in, 1 << 17);
  std::string data;
  std::array<char, 1 << 16> buffer;
  for (;;) {
    const int n = gzread(in, buffer.data(), static_cast<unsigned>(buffer.size()));
    if (n < 0) {
      int code = 0;
      const std::string message = gzerror(in, &code);
      gzclose(in);
      ThrowInput("{}: cannot read: {}", file.string(), message);
    }
    if (n == 0) break;
    data.append(buffer.data(), static_cast<size_t>(n));
    if (data.size() > kMaxTextFileBytes) {
      gzclose(in);
      ThrowInput("{}: more than {} bytes (inflated); kvq reads corpora up to that size",
                 file.string(), kMaxTextFileBytes);
    }
  }
  // gzread reports a stream cut short only here: it returns what it has, as
  // at the end of the file, and leaves Z_BUF_ERROR.
  int code = Z_OK;
  gzerror(in, &code);
  gzclose(in);
  if (code == Z_BUF_ERROR) {
    ThrowInput("{}: cannot read: truncated gzip stream (unexpected end of file)", file.string());
  }
  if (const size_t bad = utf8::FindInvalid(data); bad != utf8::kValid) {
    ThrowInput("{}: not valid UTF-8 (byte 0x{:02X} at offset {} of the {}text)", file.string(),
               static_cast<uint8_t>(data[bad]), bad,
               EndsWith(file.string(), ".gz") ? "inflated " : "");
  }
  return data;
}

bool IsPythonSpace(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

size_t CountCodePoints(std::string_view text) {
  return static_cast<size_t>(std::count_if(
      text.begin(), text.end(), [](char c) { return (static_cast<uint8_t>(c) & 0xC0) != 0x80; }));
}

// WikiText rows as Hugging Face `datasets` gives them, joined with "\n\n":
// each line keeps its "\n"; a whitespace-only line becomes "".
std::string JoinWikitextRows(std::string_view raw) {
  std::string text;
  text.reserve(raw.size() + raw.size() / 64);
  bool first = true;
  size_t start = 0;
  while (start < raw.size()) {
    size_t end = raw.find('\n', start);
    end = end == std::string_view::npos ? raw.size() : end + 1;
    const std::string_view line = raw.substr(start, end - start);
    if (!first) text += "\n\n";
    first = false;
    if (!PythonStrip(line).empty()) text += line;
    start = end;
  }
  return text;
}

// Documents of a JSON-lines file, parsed one line at a time on demand.
class DocumentReader {
 public:
  DocumentReader(std::filesystem::path file, std::string data)
      : file_(std::move(file)), data_(std::move(data)) {}

  // Appends " " + strip(next document's text); false at the end of the file.
  bool AppendNext(std::string& text) {
    while (pos_ < data_.size()) {
      size_t end = data_.find('\n', pos_);
      if (end == std::string::npos) end = data_.size();
      const std::string_view line = std::string_view(data_).substr(pos_, end - pos_);
      pos_ = end + 1;
      ++line_number_;
      if (PythonStrip(line).empty()) continue;
      nlohmann::json record;
      try {
        record = ParseJson(line, fmt::format("{}:{}", file_.string(), line_number_));
      } catch (const nlohmann::json::parse_error& e) {
        ThrowInput("{}:{}: not a JSON object: {}", file_.string(), line_number_, e.what());
      }
      const auto it = record.is_object() ? record.find("text") : record.end();
      if (it == record.end() || !it->is_string()) {
        ThrowInput("{}:{}: no \"text\" string field", file_.string(), line_number_);
      }
      text += ' ';
      text += PythonStrip(it->get_ref<const std::string&>());
      return true;
    }
    return false;
  }

 private:
  std::filesystem::path file_;
  std::string data_;
  size_t pos_ = 0;
  size_t line_number_ = 0;
};

// True when encoding text[0, cut) and text[cut, ...) separately gives the
// same ids as encoding the whole: the cut lies after a line feed and before
// one space followed by a visible ASCII character. The whitespace run then
// ends in "\n " and every pre-tokenizer regex of the GPT-2 family ends a
// piece at that "\n" ("\s*[\r\n]+" stops at the last line feed;
// "\s+(?!\S)" gives back exactly the final space), NFC never composes
// across "\n", and no added token may contain a line feed (checked).
bool IsSafeCut(std::string_view text, size_t cut) {
  return cut >= 1 && cut + 1 < text.size() && text[cut - 1] == '\n' && text[cut] == ' ' &&
         text[cut + 1] > ' ' && text[cut + 1] < 0x7F;
}

std::vector<int32_t> PlainTextTokens(const Tokenizer& tokenizer, std::string_view text,
                                     int64_t tokens, std::string_view corpus) {
  const auto wanted = static_cast<size_t>(tokens);
  const bool can_cut =
      std::none_of(tokenizer.added_tokens().begin(), tokenizer.added_tokens().end(),
                   [](const AddedToken& t) { return t.content.find('\n') != std::string::npos; });
  std::vector<int32_t> ids;
  ids.reserve(wanted + 1024);
  // Real text runs 3-5 bytes per token: a first piece of 6 bytes per token
  // is nearly always enough; each further piece is twice as large.
  size_t chunk = std::max<size_t>(wanted * 6, 1 << 14);
  size_t pos = 0;
  while (pos < text.size() && ids.size() < wanted) {
    size_t cut = text.size();
    if (can_cut && pos + chunk < text.size()) {
      cut = pos + chunk;
      while (cut < text.size() && !IsSafeCut(text, cut)) ++cut;
      if (cut + 1 >= text.size()) cut = text.size();
    }
    tokenizer.EncodeAppend(text.substr(pos, cut - pos), ids);
    pos = cut;
    chunk *= 2;
  }
  if (ids.size() < wanted) {
    ThrowInput("corpus {} has {} tokens, fewer than the {} requested", corpus, ids.size(), wanted);
  }
  ids.resize(wanted);
  return ids;
}

std::vector<int32_t> DocumentTokens(const Tokenizer& tokenizer, DocumentReader& documents,
                                    int64_t tokens, std::string_view corpus) {
  const auto wanted = static_cast<size_t>(tokens);
  std::string text;
  size_t chars = 0;
  size_t min_chars = kDocumentMinChars;
  bool more = true;
  for (;;) {
    while (more && chars <= min_chars) {
      const size_t before = text.size();
      more = documents.AppendNext(text);
      chars += CountCodePoints(std::string_view(text).substr(before));
    }
    std::vector<int32_t> ids = tokenizer.Encode(text);
    if (ids.size() >= wanted) {
      ids.resize(wanted);
      return ids;
    }
    if (!more) {
      ThrowInput("corpus {} has {} tokens, fewer than the {} requested", corpus, ids.size(),
                 wanted);
    }
    min_chars *= 2;
  }
}

}  // namespace

std::string_view PythonStrip(std::string_view text) {
  size_t begin = 0;
  while (begin < text.size()) {
    const size_t length = utf8::SequenceLength(text, begin);
    if (length == 0 || !IsPythonSpace(utf8::DecodeAt(text, begin, length))) break;
    begin += length;
  }
  size_t end = text.size();
  while (end > begin) {
    size_t start = end - 1;
    while (start > begin && (static_cast<uint8_t>(text[start]) & 0xC0) == 0x80) --start;
    const size_t length = utf8::SequenceLength(text, start);
    if (length != end - start || !IsPythonSpace(utf8::DecodeAt(text, start, length))) break;
    end = start;
  }
  return text.substr(begin, end - begin);
}

std::filesystem::path DataDir() {
  const auto holds_corpora = [](const std::filesystem::path& dir) {
    std::error_code ec;
    return std::filesystem::is_regular_file(dir / kWikitextFile, ec);
  };
  std::error_code ec;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const std::filesystem::path dir = exe.parent_path();
    for (const auto& candidate : {dir / "../share/kvq/data", dir / "data", dir / "../../data"}) {
      if (holds_corpora(candidate)) return candidate.lexically_normal();
    }
  }
  return KVQ_DATA_DIR;
}

std::filesystem::path CorpusFile(std::string_view name_or_path) {
  if (name_or_path == "wikitext") return DataDir() / kWikitextFile;
  if (name_or_path == "c4") return DataDir() / kC4File;
  std::filesystem::path file(name_or_path);
  std::error_code ec;
  const auto status = std::filesystem::status(file, ec);
  if (status.type() == std::filesystem::file_type::not_found || ec) {
    ThrowInput("corpus {}: not a built-in corpus (wikitext, c4) and no such file", name_or_path);
  }
  if (status.type() != std::filesystem::file_type::regular) {
    // Named for what it is: a FIFO would block a read forever.
    ThrowInput("{}: is {}, not a regular file", name_or_path,
               status.type() == std::filesystem::file_type::directory ? "a folder"
               : status.type() == std::filesystem::file_type::fifo    ? "a FIFO"
                                                                      : "a device or socket");
  }
  return file;
}

std::string CorpusText(std::string_view name_or_path) {
  const std::filesystem::path file = CorpusFile(name_or_path);
  std::string data = ReadMaybeGzipped(file);
  if (name_or_path == "wikitext") return JoinWikitextRows(data);
  if (!IsDocumentFile(file)) return data;
  DocumentReader documents(file, std::move(data));
  std::string text;
  while (documents.AppendNext(text)) {
  }
  return text;
}

std::vector<int32_t> CorpusTokens(const Tokenizer& tokenizer, std::string_view corpus,
                                  int64_t tokens) {
  if (tokens <= 0)
    ThrowInput("corpus {}: the number of tokens must be positive, not {}", corpus, tokens);
  const std::filesystem::path file = CorpusFile(corpus);
  if (IsDocumentFile(file)) {
    DocumentReader documents(file, ReadMaybeGzipped(file));
    return DocumentTokens(tokenizer, documents, tokens, corpus);
  }
  const std::string text = CorpusText(corpus);
  return PlainTextTokens(tokenizer, text, tokens, corpus);
}

}  // namespace kvq
