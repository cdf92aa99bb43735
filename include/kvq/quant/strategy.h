#pragma once
// A strategy assigns a FormatSpec to every (tensor K|V, layer, kv head).
//
//   preset   fp16 | strat1 | strat2 | strat3   (aliases 1, 2, 3)
//   spec     item ("," item)*
//   item     target "=" format | preset (as the base, first item only)
//   target   k | v | kv | k[L.H] | v[L.H] | kv[L.H]
//            L, H: a number, a range a-b (inclusive) or *
//   plan     plan:FILE.json  (per-(tensor, layer, head) formats; see docs/strategies.md)
//
// Later items override earlier ones; what no item covers stays fp16. A bare
// format (`int8:token`) means kv=that format. Examples:
//   strat3
//   k=int8:channel,v=int4:g32:token
//   k=int8:tensor,v=int8:token,k[0.0]=fp16,k[8.*]=fp16
//   strat1,k[0-2.*]=fp16
// Errors name the offending item.
#include <string>
#include <string_view>
#include <vector>

#include "kvq/quant/format.h"

namespace kvq {

enum class KvTensor { kK = 0, kV = 1 };
const char* KvTensorName(KvTensor tensor);  // "k" / "v"

// The shape a strategy is resolved against (and a plan file records).
struct KvGeometry {
  int num_layers = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  bool operator==(const KvGeometry&) const = default;
};

struct Strategy {
  struct Rule {
    bool k = false, v = false;        // Tensors the rule covers.
    int layer_lo = 0, layer_hi = -1;  // Inclusive; hi = -1: to the last.
    int head_lo = 0, head_hi = -1;
    FormatSpec format;
    std::string text;  // The item it came from, for messages.
    // Rules of a preset (strat3's outlier heads) are written for Qwen2.5-0.5B;
    // on a smaller geometry the selectors past its end simply match nothing.
    // Selectors the user wrote must lie inside the geometry (Validate).
    bool from_preset = false;
  };

  std::string name;          // What the user wrote (a preset name, the spec, plan:FILE).
  int preset_number = 0;     // 1, 2, 3 for strat1..3 (the reference's numbering), else 0.
  std::vector<Rule> rules;   // Applied in order; later rules win.
  KvGeometry plan_geometry;  // Set for plan files: the geometry they were made for.

  // The format of one (tensor, layer, head).
  const FormatSpec& Format(KvTensor tensor, int layer, int head) const;

  // Presets, spec strings and plan:FILE. Throws InputError naming the
  // offending item.
  static Strategy Parse(std::string_view text);

  // Refuses a plan made for another geometry, user-written layer/head
  // selectors outside it (preset rules outside it do not apply instead) and
  // formats that cannot apply (K-only modifiers on V, head_dim constraints).
  // Throws InputError.
  void Validate(const KvGeometry& geometry) const;

  // Bytes per token of the whole cache (all layers, K and V) and the
  // per-sequence constants, for sequences of prompt_len tokens.
  ByteCost Cost(const KvGeometry& geometry, int64_t prompt_len) const;
};

// A --strategy list: split at ';' and at commas. A selector item (k[L.H]=...)
// extends the strategy before it; a plain k=/v=/kv= item extends it only if
// that strategy also started with one; anything else starts a new strategy.
// So "1,2,k=int8:channel,v=int4:g32:token" is three strategies and
// "strat1,k[0.*]=fp16" one. Strategy::Parse itself takes one whole spec
// ("strat3,v=int4:g32:dim" = strat3 with V replaced).
std::vector<Strategy> ParseStrategyList(std::string_view text);

// The plan file of a strategy: JSON with the geometry and, for "k" and "v",
// [num_layers][num_kv_heads] canonical format names.
std::string PlanJson(const Strategy& strategy, const KvGeometry& geometry);

}  // namespace kvq
