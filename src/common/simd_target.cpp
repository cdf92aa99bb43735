#include "kvq/common/simd_target.h"

#include <hwy/targets.h>

#include <algorithm>
#include <cctype>
#include <cstdint>

#include "kvq/common/error.h"

namespace kvq {
namespace {

std::string Upper(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  return s;
}

}  // namespace

std::string SimdTarget() {
  // The best target is the lowest set bit among the supported compiled ones.
  const int64_t targets = hwy::SupportedTargets() & HWY_TARGETS;
  return hwy::TargetName(targets & -targets);
}

std::vector<std::string> SimdTargets() {
  std::vector<std::string> names;
  for (const int64_t target : hwy::SupportedAndGeneratedTargets()) {
    names.push_back(hwy::TargetName(target));
  }
  return names;
}

void PinSimdTarget(const std::string& name) {
  UnpinSimdTarget();
  std::string supported;
  for (const int64_t target : hwy::SupportedAndGeneratedTargets()) {
    const std::string target_name = hwy::TargetName(target);
    if (Upper(target_name) == Upper(name)) {
      hwy::SetSupportedTargetsForTest(target);
      return;
    }
    supported += (supported.empty() ? "" : ", ") + target_name;
  }
  throw InputError("SIMD target '" + name +
                   "' is not available on this CPU (available: " + supported + ")");
}

void UnpinSimdTarget() { hwy::SetSupportedTargetsForTest(0); }

}  // namespace kvq
