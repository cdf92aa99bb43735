#include "paths.h"

#include <charconv>
#include <cstdint>

#include "kvq/common/error.h"
#include "kvq/common/strings.h"

namespace kvq::cli {

std::vector<PathArg> PlanInputs(const std::string& flag, const std::string& strategies) {
  std::vector<PathArg> plans;
  for (const std::string_view item : SplitFields(strategies, ';')) {
    for (std::string_view field : SplitFields(item, ',')) {
      while (!field.empty() && field.front() == ' ') field.remove_prefix(1);
      if (field.starts_with("plan:") && field.size() > 5) {
        plans.push_back({flag, std::string(field.substr(5))});
      }
    }
  }
  return plans;
}

CLI::Validator PositiveInteger() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        int64_t value = 0;
        const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
        if (ec == std::errc() && end == text.data() + text.size() && value > 0) return {};
        return "must be a positive integer, got '" + Printable(text, 40) + "'";
      },
      "POSITIVE");
}

}  // namespace kvq::cli
