#pragma once
// The pre-tokenizer's regex, compiled by PCRE2 (UTF + UCP, JIT) so that it
// matches as Oniguruma does in Hugging Face `tokenizers`.
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace kvq {

// Rewrites the Oniguruma escapes whose PCRE2 meaning differs. Oniguruma's
// Unicode \s is the White_Space property (U+0009-000D, U+0085, and the
// categories Zs, Zl, Zp); PCRE2's adds U+180E MONGOLIAN VOWEL SEPARATOR. So
// \s becomes [\t-\r\x{85}\p{Z}] and \S its complement; inside a class \s
// becomes \t-\r\x{85}\p{Z}. \S inside a class cannot be spelled that way and
// is refused: the InputError names `origin`.
std::string OnigurumaToPcre2(std::string_view pattern, const std::string& origin);

class PieceRegex {
 public:
  // Compiles `pattern` (Oniguruma syntax, rewritten as above). Throws
  // InputError naming `origin` when PCRE2 rejects it.
  PieceRegex(std::string_view pattern, const std::string& origin);
  PieceRegex(PieceRegex&&) noexcept;
  PieceRegex& operator=(PieceRegex&&) noexcept;
  ~PieceRegex();

  // Per-call matching state (match data, JIT stack); one per thread.
  class Matcher {
   public:
    explicit Matcher(const PieceRegex& regex);
    Matcher(const Matcher&) = delete;
    Matcher& operator=(const Matcher&) = delete;
    ~Matcher();

    // Finds the first match in text[start..]: returns false when none, else
    // sets [begin, end). `text` must be valid UTF-8 (not checked again).
    bool Find(std::string_view text, size_t start, size_t& begin, size_t& end);

   private:
    const PieceRegex& regex_;
    void* match_data_ = nullptr;
    void* match_context_ = nullptr;
    void* jit_stack_ = nullptr;
  };

 private:
  void* code_ = nullptr;
};

}  // namespace kvq
