#include "kvq/common/json.h"

#include <set>
#include <vector>

#include "kvq/common/error.h"
#include "kvq/common/strings.h"

namespace kvq {

void CheckJsonNesting(std::string_view text, const std::string& what, int max_depth) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) {
        ThrowInput("{}: JSON nested deeper than {} levels (at byte {})", what, max_depth, i);
      }
    } else if (c == ']' || c == '}') {
      if (depth > 0) --depth;
    }
  }
}

template <class Json>
Json ParseJson(std::string_view text, const std::string& what) {
  CheckJsonNesting(text, what);
  // One set of keys per open object; arrays push nothing.
  std::vector<std::set<std::string>> keys;
  const auto callback = [&](int /*depth*/, nlohmann::json::parse_event_t event, Json& parsed) {
    using Event = nlohmann::json::parse_event_t;
    if (event == Event::object_start) {
      keys.emplace_back();
    } else if (event == Event::object_end) {
      if (!keys.empty()) keys.pop_back();
    } else if (event == Event::key && !keys.empty()) {
      const auto& key = parsed.template get_ref<const std::string&>();
      if (!keys.back().insert(key).second) {
        ThrowInput("{}: key '{}' appears twice in one object", what, Printable(key, 80));
      }
    }
    return true;
  };
  return Json::parse(text.begin(), text.end(), callback);
}

template nlohmann::json ParseJson<nlohmann::json>(std::string_view, const std::string&);
template nlohmann::ordered_json ParseJson<nlohmann::ordered_json>(std::string_view,
                                                                  const std::string&);

std::string JsonErrorText(const std::exception& e) {
  std::string text = e.what();
  if (text.rfind("[json.exception.", 0) == 0) {
    const size_t end = text.find("] ");
    if (end != std::string::npos) text.erase(0, end + 2);
  }
  return text;
}

}  // namespace kvq
