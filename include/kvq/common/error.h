#pragma once
// Errors: kvq reports failures as exceptions carrying a one-line message that
// names the culprit (file, tensor, flag) and, where useful, a hint.
//
//   InputError   - bad user input: a malformed file, a bad flag, a shape that
//                  does not fit. The CLI exits with status 2.
//   RuntimeError - the input was fine but the work failed: I/O, disk full,
//                  numerical breakdown. The CLI exits with status 1.
//
// Programmer errors (broken invariants) use KVQ_CHECK, which is always on.
#include <stdexcept>
#include <string>
#include <string_view>

#include <fmt/format.h>

namespace kvq {

class InputError : public std::runtime_error {
 public:
  explicit InputError(const std::string& message) : std::runtime_error(message) {}
};

class RuntimeError : public std::runtime_error {
 public:
  explicit RuntimeError(const std::string& message) : std::runtime_error(message) {}
};

template <typename... Args>
[[noreturn]] void ThrowInput(fmt::format_string<Args...> format, Args&&... args) {
  throw InputError(fmt::format(format, std::forward<Args>(args)...));
}

template <typename... Args>
[[noreturn]] void ThrowRuntime(fmt::format_string<Args...> format, Args&&... args) {
  throw RuntimeError(fmt::format(format, std::forward<Args>(args)...));
}

// `text` made safe to print on one line: control characters (newlines
// included), DEL and bytes that are not valid UTF-8 become \xNN escapes, so
// kvq never echoes raw terminal sequences or broken UTF-8 from an input.
// With max_chars > 0, longer text is cut there and ends in "...".
std::string Printable(std::string_view text, size_t max_chars = 0);

[[noreturn]] void CheckFailed(const char* condition, const char* file, int line);

}  // namespace kvq

#define KVQ_CHECK(condition) \
  ((condition) ? static_cast<void>(0) : ::kvq::CheckFailed(#condition, __FILE__, __LINE__))
