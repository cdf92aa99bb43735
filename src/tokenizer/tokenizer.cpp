#include "kvq/tokenizer/tokenizer.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "kvq/common/error.h"
#include "kvq/common/io.h"
#include "kvq/common/json.h"
#include "tokenizer/bpe.h"
#include "tokenizer/normalize.h"
#include "tokenizer/regex.h"
#include "tokenizer/utf8.h"

namespace kvq {
namespace {

using nlohmann::json;

// GPT-2's byte-level alphabet (bytes_to_unicode): the printable bytes
// '!'..'~', U+00A1..U+00AC and U+00AE..U+00FF stand for themselves; the other
// 68 bytes map in order to U+0100..U+0143. Vocabulary entries are written in
// this alphabet; kvq keeps them as the raw bytes they stand for.
struct ByteAlphabet {
  std::array<uint32_t, 256> byte_to_cp{};
  std::array<int16_t, 0x144> cp_to_byte{};

  ByteAlphabet() {
    cp_to_byte.fill(-1);
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable =
          (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      byte_to_cp[b] = printable ? b : next++;
      cp_to_byte[byte_to_cp[b]] = static_cast<int16_t>(b);
    }
  }

  // The bytes a vocabulary entry stands for; false when it uses a character
  // outside the alphabet (such an entry can never come out of the
  // pre-tokenizer).
  bool ToBytes(std::string_view token, std::string& bytes) const {
    bytes.clear();
    for (size_t i = 0; i < token.size();) {
      const size_t length = utf8::SequenceLength(token, i);
      if (length == 0) return false;
      const uint32_t cp = utf8::DecodeAt(token, i, length);
      if (cp >= cp_to_byte.size() || cp_to_byte[cp] < 0) return false;
      bytes.push_back(static_cast<char>(cp_to_byte[cp]));
      i += length;
    }
    return true;
  }
};

const ByteAlphabet& Alphabet() {
  static const ByteAlphabet alphabet;
  return alphabet;
}

// The pattern ByteLevel applies itself when use_regex is true (GPT-2's).
constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Pieces up to this many bytes are remembered per Encode call; longer ones
// are rare and would only fill the cache.
constexpr size_t kMaxCachedPiece = 256;

// Finds added tokens in raw text: the leftmost match, and among matches that
// start there the longest (Hugging Face uses Aho-Corasick, LeftmostLongest).
class AddedTokenMatcher {
 public:
  void Build(const std::vector<AddedToken>& tokens) {
    tokens_ = &tokens;
    for (auto& list : by_first_byte_) list.clear();
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (tokens[i].content.empty()) continue;
      by_first_byte_[static_cast<uint8_t>(tokens[i].content[0])].push_back(i);
    }
    for (auto& list : by_first_byte_) {
      std::stable_sort(list.begin(), list.end(), [&](size_t a, size_t b) {
        return tokens[a].content.size() > tokens[b].content.size();
      });
    }
  }

  // First match at or after `from`: sets `at` and returns the token, or
  // returns nullptr when there is none.
  const AddedToken* Find(std::string_view text, size_t from, size_t& at) const {
    for (size_t i = from; i < text.size(); ++i) {
      const auto& candidates = by_first_byte_[static_cast<uint8_t>(text[i])];
      for (size_t index : candidates) {
        const std::string& content = (*tokens_)[index].content;
        if (text.size() - i >= content.size() &&
            std::memcmp(text.data() + i, content.data(), content.size()) == 0) {
          at = i;
          return &(*tokens_)[index];
        }
      }
    }
    return nullptr;
  }

 private:
  const std::vector<AddedToken>* tokens_ = nullptr;
  std::array<std::vector<size_t>, 256> by_first_byte_;
};

// Field access with messages that name the file and the JSON path.
class Reader {
 public:
  explicit Reader(std::string origin) : origin_(std::move(origin)) {}
  const std::string& origin() const { return origin_; }

  template <typename... Args>
  [[noreturn]] void Fail(fmt::format_string<Args...> format, Args&&... args) const {
    ThrowInput("{}: {}", origin_, fmt::format(format, std::forward<Args>(args)...));
  }

  [[noreturn]] void Refuse(const std::string& field, const std::string& value,
                           std::string_view supported) const {
    Fail("{} = {} is not supported by kvq (supported: {}); see docs/tokenizer.md", field, value,
         supported);
  }

  // A boolean field that must equal `expected` when present.
  void ExpectBool(const json& object, const std::string& path, const char* key,
                  bool expected) const {
    const auto it = object.find(key);
    if (it == object.end() || it->is_null()) return;
    if (!it->is_boolean()) Fail("{}.{} must be a boolean", path, key);
    if (it->get<bool>() != expected) {
      Refuse(path + "." + key, it->dump(), expected ? "true" : "false");
    }
  }

  // A string field that must be null, absent or empty.
  void ExpectEmptyString(const json& object, const std::string& path, const char* key) const {
    const auto it = object.find(key);
    if (it == object.end() || it->is_null()) return;
    if (!it->is_string() || !it->get_ref<const std::string&>().empty()) {
      Refuse(path + "." + key, it->dump(), "null or \"\"");
    }
  }

  std::string Type(const json& object, const std::string& path) const {
    if (!object.is_object()) Fail("{} must be an object", path);
    const auto it = object.find("type");
    if (it == object.end() || !it->is_string()) Fail("{}.type is missing", path);
    return it->get<std::string>();
  }

 private:
  std::string origin_;
};

class TokenizerJsonSax;

}  // namespace

struct Tokenizer::Impl {
  std::filesystem::path source;
  bool nfc = false;
  bool ignore_merges = false;
  std::vector<PieceRegex> regexes;  // applied in order, each splitting the pieces of the last

  // Token table indexed by id: the bytes each id decodes to.
  std::vector<std::string> token_bytes;
  std::vector<uint8_t> token_present;
  std::array<int32_t, 256> byte_ids{};
  bpe::MergeTable merges;
  std::unordered_map<std::string, int32_t> bytes_to_id;  // byte-level vocabulary entries

  std::vector<AddedToken> added;
  AddedTokenMatcher added_matcher;

  void LoadNormalizer(const Reader& reader, const json& root);
  void LoadPreTokenizer(const Reader& reader, const json& root);
  void LoadModel(const Reader& reader, TokenizerJsonSax& sax);
  void LoadAddedTokens(const Reader& reader, const json& root);
};

namespace {

// Piece -> ids for one Encode call: open addressing keyed by views into the
// text, each slot keeping the full hash so that probes rarely touch the
// text. Real text repeats its words: most pieces are found here.
class PieceCache {
 public:
  struct Entry {
    uint32_t offset;  // into ids()
    uint32_t count;
  };

  PieceCache() : slots_(1 << 12), mask_(slots_.size() - 1) {}

  static uint64_t Hash(std::string_view piece) {
    uint64_t h = 0xCBF29CE484222325ULL ^ piece.size();  // FNV-1a, 8 bytes at a time
    size_t i = 0;
    for (; i + 8 <= piece.size(); i += 8) {
      uint64_t word;
      std::memcpy(&word, piece.data() + i, 8);
      h = (h ^ word) * 0x100000001B3ULL;
      h ^= h >> 29;
    }
    for (; i < piece.size(); ++i) h = (h ^ static_cast<uint8_t>(piece[i])) * 0x100000001B3ULL;
    h ^= h >> 32;
    return h * 0x9E3779B97F4A7C15ULL;
  }

  const Entry* Find(std::string_view piece, uint64_t hash) const {
    for (size_t i = hash & mask_;; i = (i + 1) & mask_) {
      const Slot& slot = slots_[i];
      if (slot.data == nullptr) return nullptr;
      if (slot.hash == hash && slot.size == piece.size() &&
          std::memcmp(slot.data, piece.data(), piece.size()) == 0) {
        return &slot.entry;
      }
    }
  }

  // `piece` must outlive the cache; it is not already present.
  void Insert(std::string_view piece, uint64_t hash, std::span<const int32_t> piece_ids) {
    if ((count_ + 1) * 2 > slots_.size()) Grow();
    Place(Slot{piece.data(), hash, static_cast<uint32_t>(piece.size()),
               Entry{static_cast<uint32_t>(ids_.size()), static_cast<uint32_t>(piece_ids.size())}});
    ids_.insert(ids_.end(), piece_ids.begin(), piece_ids.end());
    ++count_;
  }

  const std::vector<int32_t>& ids() const { return ids_; }

 private:
  struct Slot {
    const char* data = nullptr;
    uint64_t hash = 0;
    uint32_t size = 0;
    Entry entry{};
  };

  void Place(const Slot& slot) {
    size_t i = slot.hash & mask_;
    while (slots_[i].data != nullptr) i = (i + 1) & mask_;
    slots_[i] = slot;
  }

  void Grow() {
    std::vector<Slot> old(slots_.size() * 2);
    old.swap(slots_);
    mask_ = slots_.size() - 1;
    for (const Slot& slot : old) {
      if (slot.data != nullptr) Place(slot);
    }
  }

  std::vector<Slot> slots_;
  size_t mask_;
  size_t count_ = 0;
  std::vector<int32_t> ids_;
};

// Encoding state for one call: regex match data and the piece cache. Keys of
// the cache are views into the text (or its normalized copies), which live
// as long as the state.
class EncodeState {
 public:
  explicit EncodeState(const Tokenizer::Impl& impl) : impl_(impl) {
    matchers_.reserve(impl.regexes.size());
    for (const auto& regex : impl.regexes)
      matchers_.emplace_back(std::make_unique<PieceRegex::Matcher>(regex));
  }

  void EncodeSegment(std::string_view segment, std::vector<int32_t>& ids) {
    if (impl_.nfc) segment = Normalize(segment);
    Split(0, segment, ids);
  }

 private:
  std::string_view Normalize(std::string_view text) {
    // Owned until the call ends: the piece cache holds views into it (a
    // deque never moves its elements).
    std::string& storage = normalized_.emplace_back();
    return Nfc(text, storage);
  }

  void Split(size_t level, std::string_view text, std::vector<int32_t>& ids) {
    if (level == matchers_.size()) {
      EncodePiece(text, ids);
      return;
    }
    PieceRegex::Matcher& matcher = *matchers_[level];
    size_t pos = 0;     // start of the text not yet emitted
    size_t search = 0;  // where the next search starts
    size_t begin = 0, end = 0;
    while (search < text.size() && matcher.Find(text, search, begin, end)) {
      if (end == begin) {
        // Empty matches split nothing; step over one character.
        const size_t length = utf8::SequenceLength(text, begin);
        search = begin + std::max<size_t>(length, 1);
        continue;
      }
      if (begin > pos) Split(level + 1, text.substr(pos, begin - pos), ids);
      Split(level + 1, text.substr(begin, end - begin), ids);
      pos = search = end;
    }
    if (pos < text.size()) Split(level + 1, text.substr(pos), ids);
  }

  void EncodePiece(std::string_view piece, std::vector<int32_t>& ids) {
    const bool cacheable = piece.size() <= kMaxCachedPiece;
    uint64_t hash = 0;
    if (cacheable) {
      hash = PieceCache::Hash(piece);
      if (const PieceCache::Entry* entry = cache_.Find(piece, hash)) {
        const int32_t* first = cache_.ids().data() + entry->offset;
        ids.insert(ids.end(), first, first + entry->count);
        return;
      }
    }
    symbols_.clear();
    const auto whole =
        impl_.ignore_merges ? impl_.bytes_to_id.find(std::string(piece)) : impl_.bytes_to_id.end();
    if (whole != impl_.bytes_to_id.end()) {
      symbols_.push_back(whole->second);
    } else {
      for (char c : piece) symbols_.push_back(impl_.byte_ids[static_cast<uint8_t>(c)]);
      bpe::MergeSymbols(impl_.merges, symbols_);
    }
    ids.insert(ids.end(), symbols_.begin(), symbols_.end());
    if (cacheable) cache_.Insert(piece, hash, symbols_);
  }

  const Tokenizer::Impl& impl_;
  std::vector<std::unique_ptr<PieceRegex::Matcher>> matchers_;
  std::deque<std::string> normalized_;
  PieceCache cache_;
  std::vector<int32_t> symbols_;
};

// Streaming reader for tokenizer.json. model.vocab (151k entries) and
// model.merges (151k pairs) go straight into flat vectors; everything else,
// small, becomes a DOM. Building a DOM of the whole 11 MB file costs
// several times more.
class TokenizerJsonSax : public nlohmann::json_sax<json> {
 public:
  struct MergeEntry {
    std::string left;
    std::string right;
    bool is_pair = false;  // ["a", "b"]; otherwise the string "a b" in `left`
    int parts = 0;
  };

  json root;
  bool has_vocab = false;
  bool has_merges = false;
  std::vector<std::pair<std::string, int64_t>> vocab;
  std::vector<MergeEntry> merges;
  std::string error;  // the first problem, when a handler returned false

  bool null() override { return Value(nullptr); }
  bool boolean(bool value) override { return Value(value); }
  bool number_integer(number_integer_t value) override { return Integer(value); }
  bool number_unsigned(number_unsigned_t value) override {
    return Integer(value > static_cast<number_unsigned_t>(INT64_MAX) ? -1
                                                                     : static_cast<int64_t>(value));
  }
  bool number_float(number_float_t value, const string_t&) override { return Value(value); }
  bool binary(binary_t&) override { return Fail("unexpected binary value"); }

  bool string(string_t& value) override {
    switch (Top()) {
      case Mode::kVocab:
        return VocabNotInteger();
      case Mode::kMerges:
        merges.push_back(MergeEntry{std::move(value), {}, false, 1});
        return true;
      case Mode::kMergePair: {
        MergeEntry& entry = merges.back();
        if (entry.parts == 0) entry.left = std::move(value);
        if (entry.parts == 1) entry.right = std::move(value);
        ++entry.parts;
        return true;
      }
      case Mode::kDom:
        return Value(std::move(value));
    }
    return false;
  }

  bool start_object(std::size_t) override {
    switch (Top()) {
      case Mode::kVocab:
        return VocabNotInteger();
      case Mode::kMerges:
      case Mode::kMergePair:
        return MergeNotPair();
      case Mode::kDom:
        if (InModel() && key_ == "vocab") {
          has_vocab = true;
          frames_.push_back({nullptr, Mode::kVocab});
          return true;
        }
        json* node = Insert(json::object());
        if (frames_.size() == 1 && frames_[0].node == &root && key_ == "model") model_ = node;
        frames_.push_back({node, Mode::kDom});
        return true;
    }
    return false;
  }

  bool key(string_t& value) override {
    key_ = std::move(value);
    return true;
  }

  bool end_object() override {
    frames_.pop_back();
    return true;
  }

  bool start_array(std::size_t) override {
    switch (Top()) {
      case Mode::kVocab:
        return VocabNotInteger();
      case Mode::kMerges:
        merges.push_back(MergeEntry{{}, {}, true, 0});
        frames_.push_back({nullptr, Mode::kMergePair});
        return true;
      case Mode::kMergePair:
        return MergeNotPair();
      case Mode::kDom:
        if (InModel() && key_ == "merges") {
          has_merges = true;
          frames_.push_back({nullptr, Mode::kMerges});
          return true;
        }
        frames_.push_back({Insert(json::array()), Mode::kDom});
        return true;
    }
    return false;
  }

  bool end_array() override {
    if (Top() == Mode::kMergePair && merges.back().parts != 2) return MergeNotPair();
    frames_.pop_back();
    return true;
  }

  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
    return Fail(std::string("not valid JSON: ") + e.what());
  }

 private:
  enum class Mode { kDom, kVocab, kMerges, kMergePair };
  struct Frame {
    json* node;  // the open container (kDom only)
    Mode mode;
  };

  Mode Top() const { return frames_.empty() ? Mode::kDom : frames_.back().mode; }
  bool InModel() const {
    return model_ != nullptr && !frames_.empty() && frames_.back().node == model_;
  }

  bool Fail(std::string message) {
    if (error.empty()) error = std::move(message);
    return false;
  }
  bool VocabNotInteger() {
    return Fail(fmt::format("model.vocab[\"{}\"] must be a non-negative integer id", key_));
  }
  bool MergeNotPair() {
    return Fail(fmt::format("model.merges[{}] is neither \"a b\" nor [\"a\", \"b\"]",
                            merges.empty() ? 0 : merges.size() - 1));
  }

  bool Integer(int64_t value) {
    switch (Top()) {
      case Mode::kVocab:
        if (value < 0 || value >= (int64_t{1} << 30)) return VocabNotInteger();
        vocab.emplace_back(std::move(key_), value);
        return true;
      case Mode::kMerges:
      case Mode::kMergePair:
        return MergeNotPair();
      case Mode::kDom:
        return Value(value);
    }
    return false;
  }

  template <typename T>
  bool Value(T&& value) {
    switch (Top()) {
      case Mode::kVocab:
        return VocabNotInteger();
      case Mode::kMerges:
      case Mode::kMergePair:
        return MergeNotPair();
      case Mode::kDom:
        Insert(json(std::forward<T>(value)));
        return true;
    }
    return false;
  }

  // Adds `value` to the open container (or makes it the root); returns it.
  json* Insert(json value) {
    if (frames_.empty()) {
      root = std::move(value);
      return &root;
    }
    json& parent = *frames_.back().node;
    if (parent.is_object()) return &(parent[key_] = std::move(value));
    parent.push_back(std::move(value));
    return &parent.back();
  }

  std::vector<Frame> frames_;
  json* model_ = nullptr;
  std::string key_;
};

// Vocabulary keys (as written, in the byte-level alphabet) -> ids, for
// resolving merges: 450k lookups at load time.
class KeyIndex {
 public:
  explicit KeyIndex(size_t keys) {
    size_t capacity = 16;
    while (capacity < keys * 2) capacity *= 2;
    slots_.resize(capacity);
    mask_ = capacity - 1;
  }
  // Keeps a view of `key`, which must outlive the index. False if present.
  bool Insert(std::string_view key, int32_t id) {
    const uint64_t hash = PieceCache::Hash(key);
    size_t i = hash & mask_;
    for (; slots_[i].id >= 0; i = (i + 1) & mask_) {
      if (slots_[i].hash == hash && slots_[i].key == key) return false;
    }
    slots_[i] = Slot{key, hash, id};
    return true;
  }
  int32_t Find(std::string_view key) const {
    const uint64_t hash = PieceCache::Hash(key);
    for (size_t i = hash & mask_; slots_[i].id >= 0; i = (i + 1) & mask_) {
      if (slots_[i].hash == hash && slots_[i].key == key) return slots_[i].id;
    }
    return -1;
  }

 private:
  struct Slot {
    std::string_view key;
    uint64_t hash = 0;
    int32_t id = -1;
  };
  std::vector<Slot> slots_;
  size_t mask_ = 0;
};

}  // namespace

void Tokenizer::Impl::LoadNormalizer(const Reader& reader, const json& root) {
  const auto it = root.find("normalizer");
  if (it == root.end() || it->is_null()) return;
  const std::string type = reader.Type(*it, "normalizer");
  if (type == "NFC") {
    nfc = true;
    return;
  }
  if (type == "Sequence") {
    const auto list = it->find("normalizers");
    if (list == it->end() || !list->is_array()) reader.Fail("normalizer.normalizers is missing");
    for (size_t i = 0; i < list->size(); ++i) {
      const std::string path = fmt::format("normalizer.normalizers[{}]", i);
      const std::string inner = reader.Type((*list)[i], path);
      if (inner != "NFC") reader.Refuse(path + ".type", '"' + inner + '"', "\"NFC\"");
      nfc = true;
    }
    return;
  }
  reader.Refuse("normalizer.type", '"' + type + '"', "null, \"NFC\", a Sequence of NFC");
}

void Tokenizer::Impl::LoadPreTokenizer(const Reader& reader, const json& root) {
  const auto it = root.find("pre_tokenizer");
  if (it == root.end() || it->is_null()) {
    reader.Refuse("pre_tokenizer", "null", "ByteLevel, or a Sequence of Split then ByteLevel");
  }
  std::vector<std::pair<std::string, const json*>> steps;  // (path, object)
  const std::string type = reader.Type(*it, "pre_tokenizer");
  if (type == "Sequence") {
    const auto list = it->find("pretokenizers");
    if (list == it->end() || !list->is_array()) {
      reader.Fail("pre_tokenizer.pretokenizers is missing");
    }
    for (size_t i = 0; i < list->size(); ++i) {
      steps.emplace_back(fmt::format("pre_tokenizer.pretokenizers[{}]", i), &(*list)[i]);
    }
  } else {
    steps.emplace_back("pre_tokenizer", &*it);
  }
  bool byte_level = false;
  for (const auto& [path, step] : steps) {
    const std::string step_type = reader.Type(*step, path);
    if (byte_level) {
      reader.Refuse(path + ".type", '"' + step_type + '"', "nothing after ByteLevel");
    }
    if (step_type == "Split") {
      const auto behavior = step->find("behavior");
      if (behavior == step->end() || *behavior != "Isolated") {
        reader.Refuse(path + ".behavior", behavior == step->end() ? "null" : behavior->dump(),
                      "\"Isolated\"");
      }
      reader.ExpectBool(*step, path, "invert", false);
      const auto pattern = step->find("pattern");
      if (pattern == step->end() || !pattern->is_object())
        reader.Fail("{}.pattern is missing", path);
      if (const auto regex = pattern->find("Regex");
          regex != pattern->end() && regex->is_string()) {
        regexes.emplace_back(regex->get<std::string>(), reader.origin() + ": " + path + ".pattern");
      } else if (const auto literal = pattern->find("String");
                 literal != pattern->end() && literal->is_string()) {
        std::string quoted;
        // A literal pattern: PCRE2 takes any escaped ASCII punctuation as
        // itself.
        for (char c : literal->get<std::string>()) {
          if (std::ispunct(static_cast<unsigned char>(c))) quoted += '\\';
          quoted += c;
        }
        regexes.emplace_back(quoted, reader.origin() + ": " + path + ".pattern");
      } else {
        reader.Fail("{}.pattern must hold a \"Regex\" or a \"String\"", path);
      }
    } else if (step_type == "ByteLevel") {
      reader.ExpectBool(*step, path, "add_prefix_space", false);
      const auto use_regex = step->find("use_regex");
      if (use_regex == step->end() || (use_regex->is_boolean() && use_regex->get<bool>())) {
        regexes.emplace_back(kGpt2Pattern, reader.origin() + ": " + path + " (GPT-2 regex)");
      }
      byte_level = true;
    } else {
      reader.Refuse(path + ".type", '"' + step_type + '"', "\"Split\", \"ByteLevel\"");
    }
  }
  if (!byte_level) {
    reader.Refuse("pre_tokenizer", "without ByteLevel", "a ByteLevel step last");
  }
}

// Bounds that keep memory and time proportional to the file: a 4 KB file
// naming token id 2^30 would otherwise ask for a 2^30-entry table, and every
// added token is tried at every position of the text.
constexpr int64_t kMaxTokenId = int64_t{1} << 24;
constexpr size_t kMaxAddedTokens = 4096;

static int64_t TokenIdLimit(const TokenizerJsonSax& sax) {
  size_t added = 0;
  if (const auto it = sax.root.find("added_tokens"); it != sax.root.end() && it->is_array())
    added = it->size();
  return std::min<int64_t>(kMaxTokenId, 4 * static_cast<int64_t>(sax.vocab.size() + added) + 1024);
}

void Tokenizer::Impl::LoadModel(const Reader& reader, TokenizerJsonSax& sax) {
  const json& root = sax.root;
  const auto it = root.find("model");
  if (it == root.end() || !it->is_object()) reader.Fail("model is missing");
  const json& model = *it;
  if (const auto type = model.find("type"); type != model.end() && *type != "BPE") {
    reader.Refuse("model.type", type->dump(), "\"BPE\"");
  }
  if (const auto dropout = model.find("dropout");
      dropout != model.end() && !dropout->is_null() &&
      !(dropout->is_number() && dropout->get<double>() == 0.0)) {
    reader.Refuse("model.dropout", dropout->dump(), "null");
  }
  reader.ExpectEmptyString(model, "model", "continuing_subword_prefix");
  reader.ExpectEmptyString(model, "model", "end_of_word_suffix");
  reader.ExpectBool(model, "model", "byte_fallback", false);
  if (const auto ignore = model.find("ignore_merges");
      ignore != model.end() && ignore->is_boolean()) {
    ignore_merges = ignore->get<bool>();
  }

  if (!sax.has_vocab) reader.Fail("model.vocab must be an object");
  KeyIndex key_to_id(sax.vocab.size());
  int32_t max_id = -1;
  const int64_t id_limit = TokenIdLimit(sax);
  for (const auto& [key, id] : sax.vocab) {
    if (!key_to_id.Insert(key, static_cast<int32_t>(id))) {
      reader.Fail("model.vocab[\"{}\"] appears twice", key);
    }
    if (id >= id_limit) {
      reader.Fail(
          "model.vocab[\"{}\"] = {}: ids must be below {} (4 x the {} tokens the file "
          "defines, at most 2^24)",
          key, id, id_limit, sax.vocab.size());
    }
    max_id = std::max(max_id, static_cast<int32_t>(id));
  }
  token_bytes.assign(static_cast<size_t>(max_id + 1), {});
  token_present.assign(static_cast<size_t>(max_id + 1), 0);
  bytes_to_id.reserve(sax.vocab.size());
  std::string bytes;
  for (const auto& [key, id64] : sax.vocab) {
    const auto id = static_cast<int32_t>(id64);
    const auto slot = static_cast<size_t>(id);
    if (token_present[slot]) reader.Fail("model.vocab: id {} is used twice", id);
    token_present[slot] = 1;
    if (Alphabet().ToBytes(key, bytes)) {
      token_bytes[slot] = bytes;
      bytes_to_id.emplace(bytes, id);
    } else {
      // Not in the byte-level alphabet: never produced by encoding; decoded
      // as its own text, as the ByteLevel decoder does.
      token_bytes[slot] = key;
    }
  }
  for (int b = 0; b < 256; ++b) {
    const auto found = bytes_to_id.find(std::string(1, static_cast<char>(b)));
    if (found == bytes_to_id.end()) {
      reader.Fail("model.vocab has no token for byte 0x{:02X}; byte-level BPE needs all 256", b);
    }
    byte_ids[static_cast<size_t>(b)] = found->second;
  }

  if (!sax.has_merges) reader.Fail("model.merges must be an array");
  merges.Reserve(sax.merges.size());
  std::string joined;
  for (size_t rank = 0; rank < sax.merges.size(); ++rank) {
    const TokenizerJsonSax::MergeEntry& entry = sax.merges[rank];
    std::string_view left = entry.left, right = entry.right;
    // The entry as written, for messages.
    const auto shown = [&] {
      return entry.is_pair ? json::array({entry.left, entry.right}).dump()
                           : json(entry.left).dump();
    };
    if (!entry.is_pair) {
      // Older files: "left right", exactly one space (tokens never hold a
      // literal space: the byte-level alphabet writes it as U+0120).
      const size_t space = entry.left.find(' ');
      if (space == std::string::npos || entry.left.find(' ', space + 1) != std::string::npos) {
        reader.Fail("model.merges[{}] = {} is not two tokens separated by one space", rank,
                    shown());
      }
      left = std::string_view(entry.left).substr(0, space);
      right = std::string_view(entry.left).substr(space + 1);
    }
    joined.assign(left);
    joined.append(right);
    const int32_t l = key_to_id.Find(left), r = key_to_id.Find(right), m = key_to_id.Find(joined);
    if (l < 0 || r < 0 || m < 0) {
      reader.Fail("model.merges[{}] = {}: {} is not in model.vocab", rank, shown(),
                  l < 0   ? fmt::format("\"{}\"", left)
                  : r < 0 ? fmt::format("\"{}\"", right)
                          : fmt::format("the merged \"{}\"", joined));
    }
    merges.Insert(l, r, bpe::Merge{static_cast<int32_t>(rank), m});
  }
}

void Tokenizer::Impl::LoadAddedTokens(const Reader& reader, const json& root) {
  const auto it = root.find("added_tokens");
  if (it == root.end() || it->is_null()) return;
  if (!it->is_array()) reader.Fail("added_tokens must be an array");
  if (it->size() > kMaxAddedTokens) {
    reader.Fail("added_tokens holds {} entries, more than the {} kvq matches", it->size(),
                kMaxAddedTokens);
  }
  const int64_t id_limit = std::min<int64_t>(
      kMaxTokenId, 4 * static_cast<int64_t>(token_bytes.size() + it->size()) + 1024);
  for (size_t i = 0; i < it->size(); ++i) {
    const json& entry = (*it)[i];
    const std::string path = fmt::format("added_tokens[{}]", i);
    if (!entry.is_object()) reader.Fail("{} must be an object", path);
    const auto id = entry.find("id");
    const auto content = entry.find("content");
    if (id == entry.end() || !id->is_number_integer() || id->get<int64_t>() < 0) {
      reader.Fail("{}.id must be a non-negative integer", path);
    }
    if (id->get<int64_t>() >= id_limit) {
      reader.Fail(
          "{}.id = {}: ids must be below {} (4 x the tokens the file defines, at most "
          "2^24)",
          path, id->get<int64_t>(), id_limit);
    }
    if (content == entry.end() || !content->is_string()) reader.Fail("{}.content is missing", path);
    reader.ExpectBool(entry, path, "lstrip", false);
    reader.ExpectBool(entry, path, "rstrip", false);
    reader.ExpectBool(entry, path, "single_word", false);
    // A normalized token is matched on normalized text; kvq matches every
    // token on the raw text, which is the same thing only without a
    // normalizer.
    if (nfc) reader.ExpectBool(entry, path, "normalized", false);
    const auto special = entry.find("special");
    AddedToken token{content->get<std::string>(), static_cast<int32_t>(id->get<int64_t>()),
                     special != entry.end() && special->is_boolean() && special->get<bool>()};
    if (utf8::FindInvalid(token.content) != utf8::kValid) {
      reader.Fail("{}.content is not valid UTF-8", path);
    }
    const auto slot = static_cast<size_t>(token.id);
    if (slot >= token_bytes.size()) {
      token_bytes.resize(slot + 1);
      token_present.resize(slot + 1, 0);
    }
    token_bytes[slot] = token.content;  // added tokens decode to their content
    token_present[slot] = 1;
    added.push_back(std::move(token));
  }
  added_matcher.Build(added);
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::Load(const std::filesystem::path& file_or_model_dir) {
  std::filesystem::path file = file_or_model_dir;
  if (std::filesystem::is_directory(file)) {
    file /= "tokenizer.json";
    if (!std::filesystem::exists(file)) {
      ThrowInput("{}: no tokenizer.json in this folder (kvq reads Hugging Face tokenizer.json)",
                 file_or_model_dir.string());
    }
  }
  const MappedFile mapped = MappedFile::Open(file);
  Tokenizer tokenizer = FromJson(
      std::string_view(reinterpret_cast<const char*>(mapped.data()), mapped.size()), file.string());
  tokenizer.impl_->source = file;
  return tokenizer;
}

Tokenizer Tokenizer::FromJson(std::string_view text, const std::string& origin) {
  const Reader reader(origin);
  CheckJsonNesting(text, origin);
  TokenizerJsonSax sax;
  if (!json::sax_parse(text.begin(), text.end(), &sax)) {
    reader.Fail("{}", sax.error.empty() ? std::string("not valid JSON") : sax.error);
  }
  const json& root = sax.root;
  if (!root.is_object()) reader.Fail("not a tokenizer.json (the top level is not an object)");
  for (const char* key : {"truncation", "padding"}) {
    if (const auto it = root.find(key); it != root.end() && !it->is_null()) {
      reader.Refuse(key, it->dump().substr(0, 80), "null");
    }
  }
  auto impl = std::make_unique<Impl>();
  impl->LoadNormalizer(reader, root);
  impl->LoadPreTokenizer(reader, root);
  impl->LoadModel(reader, sax);
  impl->LoadAddedTokens(reader, root);
  // The post-processor only adds special tokens (add_special_tokens=true),
  // which kvq never does, so any post-processor is accepted and unused.
  const auto decoder = root.find("decoder");
  if (decoder == root.end() || decoder->is_null()) {
    reader.Refuse("decoder", "null", "ByteLevel");
  }
  if (const std::string type = reader.Type(*decoder, "decoder"); type != "ByteLevel") {
    reader.Refuse("decoder.type", '"' + type + '"', "\"ByteLevel\"");
  }
  return Tokenizer(std::move(impl));
}

std::vector<int32_t> Tokenizer::Encode(std::string_view text) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 16);
  EncodeAppend(text, ids);
  return ids;
}

void Tokenizer::EncodeAppend(std::string_view text, std::vector<int32_t>& ids) const {
  if (const size_t bad = utf8::FindInvalid(text); bad != utf8::kValid) {
    ThrowInput("text is not valid UTF-8: byte 0x{:02X} at byte offset {}",
               static_cast<uint8_t>(text[bad]), bad);
  }
  EncodeState state(*impl_);
  size_t pos = 0;
  while (pos < text.size()) {
    size_t at = text.size();
    const AddedToken* token = impl_->added_matcher.Find(text, pos, at);
    if (at > pos) state.EncodeSegment(text.substr(pos, at - pos), ids);
    if (token == nullptr) break;
    ids.push_back(token->id);
    pos = at + token->content.size();
  }
}

std::string Tokenizer::Decode(std::span<const int32_t> ids) const {
  std::string bytes;
  for (const int32_t id : ids) {
    if (id < 0 || static_cast<size_t>(id) >= impl_->token_bytes.size() ||
        !impl_->token_present[static_cast<size_t>(id)]) {
      ThrowInput("token id {} is not in the vocabulary of {} (ids 0..{})", id,
                 impl_->source.empty() ? std::string("the tokenizer") : impl_->source.string(),
                 vocab_size() - 1);
    }
    bytes += impl_->token_bytes[static_cast<size_t>(id)];
  }
  std::string text;
  text.reserve(bytes.size());
  utf8::AppendLossy(text, bytes);
  return text;
}

int32_t Tokenizer::vocab_size() const { return static_cast<int32_t>(impl_->token_bytes.size()); }

std::optional<int32_t> Tokenizer::TokenId(std::string_view text) const {
  for (const AddedToken& token : impl_->added) {
    if (token.content == text) return token.id;
  }
  const auto it = impl_->bytes_to_id.find(std::string(text));
  if (it == impl_->bytes_to_id.end()) return std::nullopt;
  return it->second;
}

std::span<const AddedToken> Tokenizer::added_tokens() const { return impl_->added; }

const std::filesystem::path& Tokenizer::path() const { return impl_->source; }

}  // namespace kvq
