// The planner's measuring passes (steps 1 and 4 of kvq/plan/planner.h) and
// its candidate lists.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <limits>

#include <fmt/format.h>
#include <omp.h>

#include "kvq/capture/dump.h"
#include "kvq/common/error.h"
#include "kvq/common/strings.h"
#include "kvq/plan/planner.h"
#include "kvq/quant/quantize.h"

namespace kvq {
namespace {

constexpr KvTensor kTensors[] = {KvTensor::kK, KvTensor::kV};

void Summarise(StrategyFidelity& s) {
  if (s.layers.empty()) return;
  double sum_cos = 0, sum_nmse = 0;
  s.worst_cos = s.layers[0].all.cos();
  s.worst_layer = s.layers[0].layer;
  for (const LayerFidelity& l : s.layers) {
    const double c = l.all.cos();
    if (c < s.worst_cos) {
      s.worst_cos = c;
      s.worst_layer = l.layer;
    }
    sum_cos += c;
    sum_nmse += l.all.nmse();
  }
  s.mean_cos = sum_cos / static_cast<double>(s.layers.size());
  s.mean_nmse = sum_nmse / static_cast<double>(s.layers.size());
}

}  // namespace

std::vector<FormatSpec> DefaultPlanFormats() {
  std::vector<FormatSpec> formats{FormatSpec::Parse("fp16")};
  for (const char* name :
       {"int8:tensor", "int8:token", "int8:channel", "int4:g32:token", "int4:g32:dim", "fp8e4m3"}) {
    formats.push_back(FormatSpec::Parse(name));
  }
  const size_t plain = formats.size();
  for (size_t i = 1; i < plain; ++i) {
    FormatSpec rotated = formats[i];
    rotated.hadamard = true;
    formats.push_back(rotated);
  }
  return formats;
}

std::vector<FormatSpec> DefaultPlanFormats(KvTensor tensor, const DumpInfo& info) {
  static constexpr const char* kK[] = {"fp16",
                                       "int8:tensor",
                                       "int8:token",
                                       "int8:channel",
                                       "fp8e4m3",
                                       "q8_0",
                                       "int8:tensor+had",
                                       "int4:g32:token",
                                       "int4:g32:token+had",
                                       "int4:g32:token+prerope",
                                       "int4:g32:token+bias",
                                       "q4_0",
                                       "int3:g32:token",
                                       "int2:g32:token",
                                       "int2:channel"};
  static constexpr const char* kV[] = {
      "fp16",         "int8:token",  "q8_0",         "int4:g32:dim", "int4:g32:dim+had",
      "q4_0",         "nvfp4",       "int3:g32:dim", "int2:g32:dim", "int2:g32:dim+had",
      "int2:g64:dim", "int2:channel"};
  std::vector<FormatSpec> formats;
  for (const char* name : tensor == KvTensor::kK ? std::span<const char* const>(kK)
                                                 : std::span<const char* const>(kV)) {
    const FormatSpec f = FormatSpec::Parse(name);
    if (f.bias_aware && !info.has_k_bias) continue;  // The identity without a bias.
    try {
      f.CheckHeadDim(info.head_dim);
    } catch (const InputError&) {
      continue;
    }
    formats.push_back(f);
  }
  return formats;
}

std::vector<FormatSpec> ParseFormatList(std::string_view text) {
  std::vector<FormatSpec> formats;
  for (const std::string_view item : SplitFields(text, ',')) {
    if (item.empty()) ThrowInput("format list '{}': empty item", text);
    FormatSpec f;
    try {
      f = FormatSpec::Parse(item);
    } catch (const InputError& e) {
      ThrowInput("format list '{}': {}", text, e.what());
    }
    if (std::find(formats.begin(), formats.end(), f) == formats.end()) formats.push_back(f);
  }
  return formats;
}

void ValidatePlanFormats(std::span<const FormatSpec> k_formats,
                         std::span<const FormatSpec> v_formats, const KvGeometry& g) {
  for (KvTensor t : kTensors) {
    const auto formats = t == KvTensor::kK ? k_formats : v_formats;
    if (formats.empty()) ThrowInput("no candidate formats for {}", KvTensorName(t));
    for (const FormatSpec& f : formats) {
      if (t == KvTensor::kV && (f.pre_rope || f.bias_aware)) {
        ThrowInput("candidate '{}' for v: +prerope and +bias apply to K only", f.Name());
      }
      try {
        f.CheckHeadDim(g.head_dim);
      } catch (const InputError& e) {
        ThrowInput("candidate '{}' for {}: {}", f.Name(), KvTensorName(t), e.what());
      }
    }
  }
}

void MeasureLayerUnits(const LayerReference& ref, UnitTable& table, UnitWorkspace& workspace) {
  const AttentionShape& shape = ref.shape;
  const KvGeometry& g = table.geometry;
  KVQ_CHECK(shape.num_kv_heads == g.num_kv_heads && shape.head_dim == g.head_dim);
  const int group = shape.num_heads / shape.num_kv_heads;
  const int64_t per_head = shape.tokens * shape.head_dim;
  // The unchanged group of every kv head: exactly what EvaluateKvHead returns
  // for an unchanged K/V (zero error, every cosine exactly 1), without the
  // attention. It also gives the layer's sum o^2.
  std::vector<FidelityStats> unchanged(static_cast<size_t>(g.num_kv_heads));
  double layer_sq_ref = 0;
  for (int h = 0; h < g.num_kv_heads; ++h) {
    const float* o = ref.out.data() + static_cast<int64_t>(h) * group * per_head;
    for (const FidelityStats& s :
         CompareHeads(o, o, h * group, group, shape.tokens, shape.head_dim)) {
      unchanged[static_cast<size_t>(h)].Merge(s);
    }
    layer_sq_ref += unchanged[static_cast<size_t>(h)].sum_sq_ref;
  }
  const double layer_vectors =
      static_cast<double>(shape.num_heads) * static_cast<double>(shape.tokens);

  // The layer's units, in table order, with room for their candidates; one
  // error slot per (unit, candidate), in the same order.
  const size_t first = table.units.size();
  std::vector<size_t> first_error;
  size_t num_errors = 0;
  for (KvTensor t : kTensors) {
    for (int h = 0; h < g.num_kv_heads; ++h) {
      UnitMeasure& unit = table.units.emplace_back();
      unit.tensor = t;
      unit.layer = ref.layer;
      unit.head = h;
      unit.candidates.resize(table.formats(t).size());
      first_error.push_back(num_errors);
      num_errors += unit.candidates.size();
    }
  }
  // Work items: one K candidate each, or a run of V candidates of one unit.
  // V candidates leave the scores and softmax as they are: a run shares them
  // (EvaluateKvHeadManyV), so one costs about 1 + count half-attentions
  // against 2 for a K candidate. Runs are cut so that none exceeds a
  // thread's share of the layer; every candidate is computed the same way
  // whatever the cut, so results do not depend on the thread count.
  struct Item {
    size_t unit;
    int candidate;
    int count;
  };
  const int threads = std::max(1, omp_get_max_threads());
  const int k_count = static_cast<int>(table.k_formats.size());
  const int v_count = static_cast<int>(table.v_formats.size());
  const double share = static_cast<double>(g.num_kv_heads) * (2 * k_count + 1 + v_count) / threads;
  int v_runs = 1;
  const auto run_cost = [&](int runs) { return 1 + (v_count + runs - 1) / runs; };
  while (v_runs < v_count && run_cost(v_runs) > share) ++v_runs;
  const int v_run = (v_count + v_runs - 1) / v_runs;
  // The long V runs first, so the short K items fill the gaps at the end.
  std::vector<Item> items;
  for (size_t u = first; u < table.units.size(); ++u) {
    if (table.units[u].tensor != KvTensor::kV) continue;
    for (int c = 0; c < v_count; c += v_run) items.push_back({u, c, std::min(v_run, v_count - c)});
  }
  for (size_t u = first; u < table.units.size(); ++u) {
    if (table.units[u].tensor != KvTensor::kK) continue;
    for (int c = 0; c < k_count; ++c) items.push_back({u, c, 1});
  }

  std::vector<std::string> errors(num_errors);
  const auto finish = [&](size_t unit, int c) {
    CandidateMeasure& m = table.units[unit].candidates[static_cast<size_t>(c)];
    m.deficit = (static_cast<double>(m.group.vectors) - m.group.sum_cos) / layer_vectors;
    if (layer_sq_ref > 0) {
      m.nmse = m.group.sum_sq_err / layer_sq_ref;
    } else {
      m.nmse = m.group.sum_sq_err == 0 ? 0.0 : std::numeric_limits<double>::infinity();
    }
    // The reference is finite (LayerReference::Load checks it), so a
    // non-finite figure means the format itself overflowed on the dump's
    // values (fp16 past 65504, for one). The solvers need a number per
    // candidate; NaN has no place in their order.
    if (!std::isfinite(m.deficit) || std::isnan(m.nmse)) {
      errors[first_error[unit - first] + static_cast<size_t>(c)] = fmt::format(
          "candidate '{}' gives a non-finite attention error (cos deficit {}, nmse {}): the "
          "dump's values overflow the format; leave it out of --formats, --k-formats or "
          "--v-formats",
          table.Format(unit, c).Name(), m.deficit, m.nmse);
    }
  };
  const auto evaluate = [&](const Item& item, UnitWorkspace::Slot& slot) {
    UnitMeasure& unit = table.units[item.unit];
    const int h = unit.head;
    const bool is_k = unit.tensor == KvTensor::kK;
    const float* x = (is_k ? ref.k : ref.v).data() + h * per_head;
    const HeadContext hc = ref.context.ForHead(unit.tensor, h);
    const std::span<const float> k_orig(ref.k.data() + h * per_head, static_cast<size_t>(per_head));
    const std::span<const float> v_orig(ref.v.data() + h * per_head, static_cast<size_t>(per_head));
    slot.y.resize(static_cast<size_t>(item.count * per_head));
    std::vector<int> changed;  // Candidates whose quantized unit differs from x.
    std::vector<std::span<const float>> changed_y;
    for (int i = 0; i < item.count; ++i) {
      const int c = item.candidate + i;
      const FormatSpec& f = table.Format(item.unit, c);
      float* y = slot.y.data() + i * per_head;
      try {
        QuantizeHead(f, hc, x, y, shape.tokens, shape.head_dim);
      } catch (const std::exception& e) {
        errors[first_error[item.unit - first] + static_cast<size_t>(c)] = e.what();
        continue;
      }
      CandidateMeasure& m = unit.candidates[static_cast<size_t>(c)];
      m.bytes_per_token = FormatCost(f, g.head_dim, table.chunk_len).per_token;
      if (std::memcmp(y, x, static_cast<size_t>(per_head) * sizeof(float)) == 0) {
        m.group = unchanged[static_cast<size_t>(h)];
        finish(item.unit, c);
      } else {
        changed.push_back(c);
        changed_y.emplace_back(y, static_cast<size_t>(per_head));
      }
    }
    if (changed.empty()) return;
    try {
      std::vector<std::vector<FidelityStats>> stats;
      if (is_k) {
        stats.push_back(EvaluateKvHead(ref, h, changed_y[0], v_orig, slot.fidelity));
      } else {
        stats = EvaluateKvHeadManyV(ref, h, k_orig, changed_y, slot.fidelity);
      }
      for (size_t i = 0; i < changed.size(); ++i) {
        CandidateMeasure& m = unit.candidates[static_cast<size_t>(changed[i])];
        for (const FidelityStats& s : stats[i]) m.group.Merge(s);
        finish(item.unit, changed[i]);
      }
    } catch (const std::exception& e) {
      errors[first_error[item.unit - first] + static_cast<size_t>(changed[0])] = e.what();
    }
  };
  // A single fork per layer instead of one per kernel call, balanced over
  // the threads. Each item writes its own slots of the table.
  workspace.slots.resize(static_cast<size_t>(threads));
#pragma omp parallel
  {
    UnitWorkspace::Slot& slot = workspace.slots[static_cast<size_t>(omp_get_thread_num())];
#pragma omp for schedule(dynamic, 1)
    for (size_t i = 0; i < items.size(); ++i) evaluate(items[i], slot);
  }
  for (size_t u = first; u < table.units.size(); ++u) {
    for (size_t c = 0; c < table.units[u].candidates.size(); ++c) {
      const std::string& error = errors[first_error[u - first] + c];
      if (error.empty()) continue;
      const UnitMeasure unit = table.units[u];
      table.units.resize(first);  // Nothing half-measured stays in the table.
      ThrowInput("layer {} {} head {}: {}", unit.layer, KvTensorName(unit.tensor), unit.head,
                 error);
    }
  }
}

UnitTable MeasureUnits(const KvDump& dump, std::span<const FormatSpec> k_formats,
                       std::span<const FormatSpec> v_formats, const PlanProgress& progress) {
  const DumpInfo& info = dump.info();
  UnitTable table;
  table.geometry = {info.num_layers, info.num_kv_heads, info.head_dim};
  table.chunk_len = info.chunk_len;
  ValidatePlanFormats(k_formats, v_formats, table.geometry);
  table.k_formats.assign(k_formats.begin(), k_formats.end());
  table.v_formats.assign(v_formats.begin(), v_formats.end());
  LayerReference ref;
  UnitWorkspace workspace;
  for (int l = 0; l < info.num_layers; ++l) {
    if (progress) progress("measure", l, info.num_layers);
    ref.Load(dump, l);
    try {
      MeasureLayerUnits(ref, table, workspace);
    } catch (const InputError& e) {
      ThrowInput("{}: {}", dump.path().string(), e.what());
    }
  }
  if (progress) progress("measure", info.num_layers, info.num_layers);
  return table;
}

std::vector<StrategyFidelity> MeasureStrategies(const KvDump& dump,
                                                std::span<const Strategy> strategies,
                                                const PlanProgress& progress) {
  const DumpInfo& info = dump.info();
  const KvGeometry g{info.num_layers, info.num_kv_heads, info.head_dim};
  std::vector<StrategyFidelity> out(strategies.size());
  for (size_t s = 0; s < strategies.size(); ++s) {
    strategies[s].Validate(g);
    out[s].name = strategies[s].name;
    out[s].bytes_per_token = strategies[s].Cost(g, info.chunk_len).per_token;
  }
  LayerReference ref;
  FidelityWorkspace workspace;
  for (int l = 0; l < info.num_layers; ++l) {
    if (progress) progress("validate", l, info.num_layers);
    ref.Load(dump, l);
    for (size_t s = 0; s < strategies.size(); ++s) {
      out[s].layers.push_back(EvaluateLayer(ref, strategies[s], workspace));
    }
  }
  if (progress) progress("validate", info.num_layers, info.num_layers);
  for (StrategyFidelity& s : out) Summarise(s);
  return out;
}

}  // namespace kvq
