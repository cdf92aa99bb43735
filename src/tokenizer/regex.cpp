#include "tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <utility>

#include "kvq/common/error.h"

namespace kvq {
namespace {

constexpr std::string_view kSpaceClassBody = "\\t-\\r\\x{85}\\p{Z}";

std::string Pcre2Message(int code) {
  PCRE2_UCHAR buffer[256];
  if (pcre2_get_error_message(code, buffer, sizeof(buffer)) < 0) return "unknown PCRE2 error";
  return reinterpret_cast<const char*>(buffer);
}

pcre2_code* Code(void* code) { return static_cast<pcre2_code*>(code); }

}  // namespace

std::string OnigurumaToPcre2(std::string_view pattern, const std::string& origin) {
  std::string out;
  out.reserve(pattern.size() + 32);
  bool in_class = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      const char e = pattern[i + 1];
      ++i;
      if (e == 's') {
        if (in_class) {
          out += kSpaceClassBody;
        } else {
          out += '[';
          out += kSpaceClassBody;
          out += ']';
        }
      } else if (e == 'S') {
        if (in_class) {
          ThrowInput("{}: \\S inside a character class is not supported (pattern {})", origin,
                     pattern);
        }
        out += "[^";
        out += kSpaceClassBody;
        out += ']';
      } else {
        out += c;
        out += e;
      }
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out += c;
      // A ']' right after '[' or '[^' is a literal member, not the end.
      if (i + 1 < pattern.size() && pattern[i + 1] == '^') out += pattern[++i];
      if (i + 1 < pattern.size() && pattern[i + 1] == ']') out += pattern[++i];
      continue;
    }
    if (in_class && c == '[' && i + 1 < pattern.size() && pattern[i + 1] == ':') {
      // POSIX class such as [:alpha:] inside a bracket: copy through its ']'.
      const size_t close = pattern.find(":]", i + 2);
      if (close != std::string_view::npos) {
        out.append(pattern.substr(i, close + 2 - i));
        i = close + 1;
        continue;
      }
    }
    if (in_class && c == ']') in_class = false;
    out += c;
  }
  return out;
}

PieceRegex::PieceRegex(std::string_view pattern, const std::string& origin) {
  const std::string rewritten = OnigurumaToPcre2(pattern, origin);
  int error = 0;
  PCRE2_SIZE offset = 0;
  pcre2_code* code =
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(rewritten.data()), rewritten.size(),
                    PCRE2_UTF | PCRE2_UCP | PCRE2_NEVER_BACKSLASH_C, &error, &offset, nullptr);
  if (code == nullptr) {
    ThrowInput("{}: pre-tokenizer regex rejected by PCRE2 at offset {}: {} (pattern {})", origin,
               offset, Pcre2Message(error), pattern);
  }
  // JIT is an optimisation: where it is unavailable pcre2_match interprets.
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  code_ = code;
}

PieceRegex::PieceRegex(PieceRegex&& other) noexcept : code_(std::exchange(other.code_, nullptr)) {}

PieceRegex& PieceRegex::operator=(PieceRegex&& other) noexcept {
  std::swap(code_, other.code_);
  return *this;
}

PieceRegex::~PieceRegex() { pcre2_code_free(Code(code_)); }

PieceRegex::Matcher::Matcher(const PieceRegex& regex) : regex_(regex) {
  match_data_ = pcre2_match_data_create_from_pattern(Code(regex.code_), nullptr);
  if (match_data_ == nullptr) throw std::bad_alloc();
}

PieceRegex::Matcher::~Matcher() {
  pcre2_match_data_free(static_cast<pcre2_match_data*>(match_data_));
  pcre2_match_context_free(static_cast<pcre2_match_context*>(match_context_));
  pcre2_jit_stack_free(static_cast<pcre2_jit_stack*>(jit_stack_));
}

bool PieceRegex::Matcher::Find(std::string_view text, size_t start, size_t& begin, size_t& end) {
  auto* data = static_cast<pcre2_match_data*>(match_data_);
  const auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  // The whole text is validated once by the caller; letting PCRE2 check it
  // on every call would make splitting quadratic.
  int rc = pcre2_match(Code(regex_.code_), subject, text.size(), start, PCRE2_NO_UTF_CHECK, data,
                       static_cast<pcre2_match_context*>(match_context_));
  if (rc == PCRE2_ERROR_JIT_STACKLIMIT && jit_stack_ == nullptr) {
    // The default 32 KiB machine stack was too small for this subject:
    // retry once with a heap stack of up to 64 MiB.
    jit_stack_ = pcre2_jit_stack_create(256 * 1024, 64 * 1024 * 1024, nullptr);
    match_context_ = pcre2_match_context_create(nullptr);
    if (jit_stack_ == nullptr || match_context_ == nullptr) throw std::bad_alloc();
    pcre2_jit_stack_assign(static_cast<pcre2_match_context*>(match_context_), nullptr, jit_stack_);
    rc = pcre2_match(Code(regex_.code_), subject, text.size(), start, PCRE2_NO_UTF_CHECK, data,
                     static_cast<pcre2_match_context*>(match_context_));
  }
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc < 0) {
    ThrowRuntime("pre-tokenizer regex failed at byte offset {}: {}", start, Pcre2Message(rc));
  }
  const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data);
  begin = ovector[0];
  end = ovector[1];
  return true;
}

}  // namespace kvq
