#pragma once
// Small helpers shared by the planner's files (measure.cpp, solve.cpp,
// plan_files.cpp); not part of the library's interface.
#include <string>

#include <fmt/format.h>

#include "kvq/plan/planner.h"

namespace kvq::plan_detail {

inline double Fp16Bytes(const KvGeometry& g) {
  return 2.0 * 2.0 * g.num_layers * g.num_kv_heads * g.head_dim;
}

inline std::string UnitName(const UnitMeasure& u) {
  return fmt::format("{}[{}.{}]", KvTensorName(u.tensor), u.layer, u.head);
}

}  // namespace kvq::plan_detail
