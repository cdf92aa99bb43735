#pragma once
// Splitting and reading the list grammars of flags, format names and
// strategy specs.
#include <charconv>
#include <string_view>
#include <vector>

namespace kvq {

// The fields of `text` between separators, empty ones included ("a,,b" ->
// {"a", "", "b"}; "" -> {""}), so that callers can refuse an empty item by
// name. The views point into `text`.
inline std::vector<std::string_view> SplitFields(std::string_view text, char separator) {
  std::vector<std::string_view> fields;
  size_t start = 0;
  while (true) {
    const size_t end = text.find(separator, start);
    if (end == std::string_view::npos) {
      fields.push_back(text.substr(start));
      return fields;
    }
    fields.push_back(text.substr(start, end - start));
    start = end + 1;
  }
}

// The whole of `text` as a decimal integer >= 0: false for an empty text, a
// sign, a trailing character or an overflow (value is then unspecified).
inline bool ParseNonNegativeInt(std::string_view text, int& value) {
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  return !text.empty() && ec == std::errc() && end == text.data() + text.size() && value >= 0;
}

}  // namespace kvq
