// Encoding and decoding with the tables the loader (tokenizer_json.cpp)
// filled.
#include "kvq/tokenizer/tokenizer.h"

#include <algorithm>
#include <cstring>
#include <deque>
#include <memory>

#include "kvq/common/error.h"
#include "tokenizer/normalize.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/utf8.h"

namespace kvq {
namespace {

// Pieces up to this many bytes are remembered per Encode call; longer ones
// are rare and would only fill the cache.
constexpr size_t kMaxCachedPiece = 256;

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
      hash = HashBytes(piece);
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

}  // namespace

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

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
  for (const AddedTokenMatcher::Match& match : impl_->added_matcher.FindAll(text)) {
    const AddedToken& token = impl_->added[match.token];
    if (match.begin > pos) state.EncodeSegment(text.substr(pos, match.begin - pos), ids);
    ids.push_back(token.id);
    pos = match.begin + token.content.size();
  }
  if (pos < text.size()) state.EncodeSegment(text.substr(pos), ids);
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
