// The tokenizer.json loader: reads the file into Tokenizer::Impl's tables,
// refusing by name what kvq does not implement (docs/tokenizer.md).
#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <memory>

#include <nlohmann/json.hpp>

#include "kvq/common/error.h"
#include "kvq/common/io.h"
#include "kvq/common/json.h"
#include "kvq/tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_impl.h"
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
        if (entry.parts == 0) {
          entry.left = std::move(value);
        } else if (entry.parts == 1) {
          entry.right = std::move(value);
        }
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
    const uint64_t hash = HashBytes(key);
    size_t i = hash & mask_;
    for (; slots_[i].id >= 0; i = (i + 1) & mask_) {
      if (slots_[i].hash == hash && slots_[i].key == key) return false;
    }
    slots_[i] = Slot{key, hash, id};
    return true;
  }
  int32_t Find(std::string_view key) const {
    const uint64_t hash = HashBytes(key);
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

void LoadNormalizer(Tokenizer::Impl& impl, const Reader& reader, const json& root) {
  const auto it = root.find("normalizer");
  if (it == root.end() || it->is_null()) return;
  const std::string type = reader.Type(*it, "normalizer");
  if (type == "NFC") {
    impl.nfc = true;
    return;
  }
  if (type == "Sequence") {
    const auto list = it->find("normalizers");
    if (list == it->end() || !list->is_array()) reader.Fail("normalizer.normalizers is missing");
    for (size_t i = 0; i < list->size(); ++i) {
      const std::string path = fmt::format("normalizer.normalizers[{}]", i);
      const std::string inner = reader.Type((*list)[i], path);
      if (inner != "NFC") reader.Refuse(path + ".type", '"' + inner + '"', "\"NFC\"");
      impl.nfc = true;
    }
    return;
  }
  reader.Refuse("normalizer.type", '"' + type + '"', "null, \"NFC\", a Sequence of NFC");
}

void LoadPreTokenizer(Tokenizer::Impl& impl, const Reader& reader, const json& root) {
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
        impl.regexes.emplace_back(regex->get<std::string>(),
                                  reader.origin() + ": " + path + ".pattern");
      } else if (const auto literal = pattern->find("String");
                 literal != pattern->end() && literal->is_string()) {
        std::string quoted;
        // A literal pattern: PCRE2 takes any escaped ASCII punctuation as
        // itself.
        for (char c : literal->get<std::string>()) {
          if (std::ispunct(static_cast<unsigned char>(c))) quoted += '\\';
          quoted += c;
        }
        impl.regexes.emplace_back(quoted, reader.origin() + ": " + path + ".pattern");
      } else {
        reader.Fail("{}.pattern must hold a \"Regex\" or a \"String\"", path);
      }
    } else if (step_type == "ByteLevel") {
      reader.ExpectBool(*step, path, "add_prefix_space", false);
      const auto use_regex = step->find("use_regex");
      if (use_regex == step->end() || (use_regex->is_boolean() && use_regex->get<bool>())) {
        impl.regexes.emplace_back(kGpt2Pattern, reader.origin() + ": " + path + " (GPT-2 regex)");
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

// Bounds that keep memory proportional to the file: a 4 KB file naming token
// id 2^30 would otherwise ask for a 2^30-entry table. (The number of added
// tokens needs no bound of its own: the matcher's time and memory are linear
// in their bytes, which the file holds.)
constexpr int64_t kMaxTokenId = int64_t{1} << 24;
// The matcher numbers its trie nodes with 32 bits: one per content byte.
constexpr size_t kMaxAddedTokenBytes = size_t{1} << 31;

int64_t TokenIdLimit(const TokenizerJsonSax& sax) {
  size_t added = 0;
  if (const auto it = sax.root.find("added_tokens"); it != sax.root.end() && it->is_array())
    added = it->size();
  return std::min<int64_t>(kMaxTokenId, 4 * static_cast<int64_t>(sax.vocab.size() + added) + 1024);
}

void LoadModel(Tokenizer::Impl& impl, const Reader& reader, TokenizerJsonSax& sax) {
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
    impl.ignore_merges = ignore->get<bool>();
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
  impl.token_bytes.assign(static_cast<size_t>(max_id) + 1, {});
  impl.token_present.assign(static_cast<size_t>(max_id) + 1, 0);
  impl.bytes_to_id.reserve(sax.vocab.size());
  std::string bytes;
  for (const auto& [key, id64] : sax.vocab) {
    const auto id = static_cast<int32_t>(id64);
    const auto slot = static_cast<size_t>(id);
    if (impl.token_present[slot]) reader.Fail("model.vocab: id {} is used twice", id);
    impl.token_present[slot] = 1;
    if (Alphabet().ToBytes(key, bytes)) {
      impl.token_bytes[slot] = bytes;
      impl.bytes_to_id.emplace(bytes, id);
    } else {
      // Not in the byte-level alphabet: never produced by encoding; decoded
      // as its own text, as the ByteLevel decoder does.
      impl.token_bytes[slot] = key;
    }
  }
  for (int b = 0; b < 256; ++b) {
    const auto found = impl.bytes_to_id.find(std::string(1, static_cast<char>(b)));
    if (found == impl.bytes_to_id.end()) {
      reader.Fail("model.vocab has no token for byte 0x{:02X}; byte-level BPE needs all 256", b);
    }
    impl.byte_ids[static_cast<size_t>(b)] = found->second;
  }

  if (!sax.has_merges) reader.Fail("model.merges must be an array");
  impl.merges.Reserve(sax.merges.size());
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
    impl.merges.Insert(l, r, bpe::Merge{static_cast<int32_t>(rank), m});
  }
}

void LoadAddedTokens(Tokenizer::Impl& impl, const Reader& reader, const json& root) {
  const auto it = root.find("added_tokens");
  if (it == root.end() || it->is_null()) return;
  if (!it->is_array()) reader.Fail("added_tokens must be an array");
  const int64_t id_limit = std::min<int64_t>(
      kMaxTokenId, 4 * static_cast<int64_t>(impl.token_bytes.size() + it->size()) + 1024);
  size_t content_bytes = 0;
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
    if (impl.nfc) reader.ExpectBool(entry, path, "normalized", false);
    const auto special = entry.find("special");
    AddedToken token{content->get<std::string>(), static_cast<int32_t>(id->get<int64_t>()),
                     special != entry.end() && special->is_boolean() && special->get<bool>()};
    if (utf8::FindInvalid(token.content) != utf8::kValid) {
      reader.Fail("{}.content is not valid UTF-8", path);
    }
    content_bytes += token.content.size();
    if (content_bytes > kMaxAddedTokenBytes) {
      reader.Fail("added_tokens hold more than {} bytes of content", kMaxAddedTokenBytes);
    }
    const auto slot = static_cast<size_t>(token.id);
    if (slot >= impl.token_bytes.size()) {
      impl.token_bytes.resize(slot + 1);
      impl.token_present.resize(slot + 1, 0);
    }
    impl.token_bytes[slot] = token.content;  // added tokens decode to their content
    impl.token_present[slot] = 1;
    impl.added.push_back(std::move(token));
  }
  impl.added_matcher.Build(impl.added);
}

}  // namespace

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
  LoadNormalizer(*impl, reader, root);
  LoadPreTokenizer(*impl, reader, root);
  LoadModel(*impl, reader, sax);
  LoadAddedTokens(*impl, reader, root);
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

}  // namespace kvq
