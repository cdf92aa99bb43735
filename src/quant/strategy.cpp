#include "kvq/quant/strategy.h"

#include <nlohmann/json.hpp>

#include "kvq/common/error.h"
#include "kvq/common/io.h"
#include "kvq/common/json.h"
#include "kvq/common/strings.h"

namespace kvq {
namespace {

using Json = nlohmann::json;

// "*", "N" or "a-b" -> [lo, hi] (hi = -1: to the last).
bool ParseRange(std::string_view text, int& lo, int& hi) {
  if (text == "*") {
    lo = 0;
    hi = -1;
    return true;
  }
  const size_t dash = text.find('-');
  if (dash == std::string_view::npos) {
    if (!ParseNonNegativeInt(text, lo)) return false;
    hi = lo;
    return true;
  }
  return ParseNonNegativeInt(text.substr(0, dash), lo) &&
         ParseNonNegativeInt(text.substr(dash + 1), hi) && lo <= hi;
}

Strategy::Rule MakeRule(bool k, bool v, const char* format) {
  Strategy::Rule rule;
  rule.k = k;
  rule.v = v;
  rule.format = FormatSpec::Parse(format);
  rule.text = std::string(k && v ? "kv" : (k ? "k" : "v")) + "=" + format;
  return rule;
}

// Appends the rules of a preset; false when `name` is not one.
bool AddPreset(std::string_view name, Strategy& s) {
  if (name == "fp16") {
    s.rules.push_back(MakeRule(true, true, "fp16"));
  } else if (name == "strat1" || name == "1") {
    s.rules.push_back(MakeRule(true, true, "int8:tensor"));
    s.preset_number = 1;
  } else if (name == "strat2" || name == "2") {
    s.rules.push_back(MakeRule(true, true, "int8:token"));
    s.preset_number = 2;
  } else if (name == "strat3" || name == "3") {
    // The reference's outlier heads: K of these (layer, head) stay fp16.
    s.rules.push_back(MakeRule(true, false, "int8:tensor"));
    s.rules.push_back(MakeRule(false, true, "int8:token"));
    for (auto [layer, head] : {std::pair{0, 0}, {0, 1}, {1, 1}, {2, 0}, {2, 1}, {8, 0}}) {
      Strategy::Rule rule = MakeRule(true, false, "fp16");
      rule.layer_lo = rule.layer_hi = layer;
      rule.head_lo = rule.head_hi = head;
      rule.text = "k[" + std::to_string(layer) + "." + std::to_string(head) + "]=fp16";
      rule.from_preset = true;
      s.rules.push_back(rule);
    }
    s.preset_number = 3;
  } else {
    return false;
  }
  return true;
}

Strategy::Rule ParseItem(std::string_view item, std::string_view whole) {
  const size_t eq = item.find('=');
  Strategy::Rule rule;
  rule.text = std::string(item);
  std::string_view target = item.substr(0, eq);
  const std::string_view format = item.substr(eq + 1);
  const size_t bracket = target.find('[');
  const std::string_view tensor = target.substr(0, bracket);
  if (tensor == "k") {
    rule.k = true;
  } else if (tensor == "v") {
    rule.v = true;
  } else if (tensor == "kv") {
    rule.k = rule.v = true;
  } else {
    ThrowInput("strategy '{}': in '{}', '{}' is not a target (k, v, kv, k[L.H], v[L.H])", whole,
               item, tensor);
  }
  if (bracket != std::string_view::npos) {
    const std::string_view inside = target.substr(bracket + 1);
    const size_t dot = inside.find('.');
    if (!inside.ends_with(']') || dot == std::string_view::npos ||
        !ParseRange(inside.substr(0, dot), rule.layer_lo, rule.layer_hi) ||
        !ParseRange(inside.substr(dot + 1, inside.size() - dot - 2), rule.head_lo, rule.head_hi)) {
      ThrowInput(
          "strategy '{}': in '{}', '{}' is not a [layer.head] selector (each a number, a-b or *, "
          "e.g. k[0.1], k[8.*], v[0-3.*])",
          whole, item, target.substr(bracket));
    }
  }
  try {
    rule.format = FormatSpec::Parse(format);
  } catch (const InputError& e) {
    ThrowInput("strategy '{}': in '{}': {}", whole, item, e.what());
  }
  return rule;
}

bool Covers(const Strategy::Rule& r, KvTensor tensor, int layer, int head) {
  return (tensor == KvTensor::kK ? r.k : r.v) && layer >= r.layer_lo &&
         (r.layer_hi < 0 || layer <= r.layer_hi) && head >= r.head_lo &&
         (r.head_hi < 0 || head <= r.head_hi);
}

Strategy LoadPlan(std::string_view text) {
  const std::string path(text.substr(5));
  if (path.empty()) ThrowInput("strategy 'plan:': no plan file after 'plan:' (plan:FILE.json)");
  Strategy s;
  s.name = std::string(text);
  Json j;
  try {
    j = ParseJson<Json>(ReadTextFile(path), "plan " + path);
  } catch (const Json::exception& e) {
    ThrowInput("plan {}: not valid JSON: {}", path, JsonErrorText(e));
  }
  try {
    if (j.value("kind", "") != "kvq.plan") {
      ThrowInput("plan {}: 'kind' is not 'kvq.plan' (see docs/strategies.md)", path);
    }
    const auto& g = j.at("geometry");
    // Positive integers, checked before narrowing (a huge float would be
    // undefined to convert).
    const auto count = [&](const char* key) {
      const Json& value = g.at(key);
      if (!value.is_number_integer() || value.get<int64_t>() <= 0 ||
          value.get<int64_t>() > (1 << 30)) {
        ThrowInput("plan {}: geometry.{} must be a positive integer, got {}", path, key,
                   value.dump());
      }
      return value.get<int>();
    };
    s.plan_geometry = {count("num_layers"), count("num_kv_heads"), count("head_dim")};
    for (const char* tensor : {"k", "v"}) {
      const auto& layers = j.at(tensor);
      if (!layers.is_array() || static_cast<int>(layers.size()) != s.plan_geometry.num_layers) {
        ThrowInput("plan {}: '{}' must list {} layers", path, tensor, s.plan_geometry.num_layers);
      }
      for (int l = 0; l < s.plan_geometry.num_layers; ++l) {
        const auto& heads = layers[static_cast<size_t>(l)];
        if (!heads.is_array() || static_cast<int>(heads.size()) != s.plan_geometry.num_kv_heads) {
          ThrowInput("plan {}: {}[{}] must list {} heads", path, tensor, l,
                     s.plan_geometry.num_kv_heads);
        }
        for (int h = 0; h < s.plan_geometry.num_kv_heads; ++h) {
          Strategy::Rule rule;
          rule.k = tensor[0] == 'k';
          rule.v = !rule.k;
          rule.layer_lo = rule.layer_hi = l;
          rule.head_lo = rule.head_hi = h;
          const auto name = heads[static_cast<size_t>(h)].get<std::string>();
          rule.text = fmt::format("{}[{}.{}]={}", tensor, l, h, name);
          try {
            rule.format = FormatSpec::Parse(name);
          } catch (const InputError& e) {
            ThrowInput("plan {}: {}[{}][{}]: {}", path, tensor, l, h, e.what());
          }
          s.rules.push_back(rule);
        }
      }
    }
  } catch (const Json::exception& e) {
    ThrowInput("plan {}: malformed ({}); see docs/strategies.md", path, e.what());
  }
  return s;
}

}  // namespace

const char* KvTensorName(KvTensor tensor) { return tensor == KvTensor::kK ? "k" : "v"; }

const FormatSpec& Strategy::Format(KvTensor tensor, int layer, int head) const {
  static const FormatSpec kFp16;
  for (auto it = rules.rbegin(); it != rules.rend(); ++it) {
    if (Covers(*it, tensor, layer, head)) return it->format;
  }
  return kFp16;
}

Strategy Strategy::Parse(std::string_view text) {
  if (text.empty()) ThrowInput("empty strategy (try fp16, strat1, strat2, strat3 or k=...,v=...)");
  if (text.starts_with("plan:")) return LoadPlan(text);
  Strategy s;
  s.name = std::string(text);
  const auto items = SplitFields(text, ',');
  for (size_t i = 0; i < items.size(); ++i) {
    const std::string_view item = items[i];
    if (item.find('=') != std::string_view::npos) {
      s.rules.push_back(ParseItem(item, text));
      continue;
    }
    if (i == 0 && AddPreset(item, s)) continue;
    if (i == 0) {
      Rule rule;
      rule.k = rule.v = true;
      rule.text = std::string(item);
      try {
        rule.format = FormatSpec::Parse(item);
      } catch (const InputError& e) {
        ThrowInput(
            "strategy '{}': '{}' is neither a preset (fp16, strat1, strat2, strat3, 1, 2, 3) nor a "
            "format ({})",
            text, item, e.what());
      }
      s.rules.push_back(rule);
      continue;
    }
    ThrowInput("strategy '{}': item '{}' needs the form target=format (e.g. k[0.*]=fp16)", text,
               item);
  }
  if (items.size() > 1) s.preset_number = 0;
  return s;
}

void Strategy::Validate(const KvGeometry& g) const {
  if (plan_geometry.num_layers > 0 && !(plan_geometry == g)) {
    ThrowInput(
        "{}: the plan was made for {} layers x {} kv heads x head_dim {}, the model has {} x {} x "
        "{}",
        name, plan_geometry.num_layers, plan_geometry.num_kv_heads, plan_geometry.head_dim,
        g.num_layers, g.num_kv_heads, g.head_dim);
  }
  for (const Rule& r : rules) {
    // A preset's per-head rules past the geometry match nothing (Covers); a
    // user's selector out of range is most likely a mistake and is refused.
    if (!r.from_preset && (r.layer_lo >= g.num_layers || r.layer_hi >= g.num_layers)) {
      ThrowInput("strategy '{}': in '{}', layer out of range (the model has {} layers)", name,
                 r.text, g.num_layers);
    }
    if (!r.from_preset && (r.head_lo >= g.num_kv_heads || r.head_hi >= g.num_kv_heads)) {
      ThrowInput("strategy '{}': in '{}', kv head out of range (the model has {} kv heads)", name,
                 r.text, g.num_kv_heads);
    }
    if (r.v && (r.format.pre_rope || r.format.bias_aware)) {
      ThrowInput("strategy '{}': in '{}', +prerope and +bias apply to K only", name, r.text);
    }
    try {
      r.format.CheckHeadDim(g.head_dim);
    } catch (const InputError& e) {
      ThrowInput("strategy '{}': in '{}': {}", name, r.text, e.what());
    }
  }
}

ByteCost Strategy::Cost(const KvGeometry& g, int64_t prompt_len) const {
  ByteCost total;
  for (KvTensor t : {KvTensor::kK, KvTensor::kV}) {
    for (int l = 0; l < g.num_layers; ++l) {
      for (int h = 0; h < g.num_kv_heads; ++h) {
        const ByteCost c = FormatCost(Format(t, l, h), g.head_dim, prompt_len);
        total.per_token += c.per_token;
        total.per_sequence += c.per_sequence;
      }
    }
  }
  return total;
}

std::vector<Strategy> ParseStrategyList(std::string_view text) {
  std::vector<Strategy> out;
  for (std::string_view group : SplitFields(text, ';')) {
    std::vector<std::string> specs;
    bool assignments = false;  // The spec being built started with k=, v= or kv=.
    for (std::string_view piece : SplitFields(group, ',')) {
      const bool assignment = piece.find('=') != std::string_view::npos;
      const bool selector = assignment && piece.find('[') < piece.find('=');
      if (!specs.empty() && (selector || (assignment && assignments))) {
        specs.back() += ",";
        specs.back() += piece;
      } else {
        specs.emplace_back(piece);
        assignments = assignment;
      }
    }
    for (const auto& spec : specs) out.push_back(Strategy::Parse(spec));
  }
  return out;
}

std::string PlanJson(const Strategy& strategy, const KvGeometry& g) {
  Json j;
  j["kind"] = "kvq.plan";
  j["version"] = 1;
  j["strategy"] = strategy.name;
  j["geometry"] = {
      {"num_layers", g.num_layers}, {"num_kv_heads", g.num_kv_heads}, {"head_dim", g.head_dim}};
  for (KvTensor t : {KvTensor::kK, KvTensor::kV}) {
    Json layers = Json::array();
    for (int l = 0; l < g.num_layers; ++l) {
      Json heads = Json::array();
      for (int h = 0; h < g.num_kv_heads; ++h) heads.push_back(strategy.Format(t, l, h).Name());
      layers.push_back(heads);
    }
    j[KvTensorName(t)] = layers;
  }
  return j.dump(1) + "\n";
}

}  // namespace kvq
