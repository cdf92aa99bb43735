#include "kvq/report/results.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "kvq/common/csv.h"
#include "kvq/common/error.h"
#include "kvq/common/io.h"
#include "kvq/common/json.h"
#include "kvq/report/svg.h"

namespace kvq::report {
namespace {

template <typename Row>
std::vector<std::string> NamesOf(const std::vector<Row>& rows) {
  std::vector<std::string> names;
  for (const Row& r : rows) {
    if (std::find(names.begin(), names.end(), r.strategy) == names.end()) {
      names.push_back(r.strategy);
    }
  }
  return names;
}

std::string Subtitle(const std::string& context, const std::string& more) {
  if (context.empty()) return more;
  return more.empty() ? context : context + "  \u00b7  " + more;
}

int LayerCount(const std::vector<QuantRow>& rows) {
  int n = 0;
  for (const QuantRow& r : rows) n = std::max(n, r.layer + 1);
  return n;
}

int HeadCount(const std::vector<QuantRow>& rows) {
  int n = 0;
  for (const QuantRow& r : rows) n = std::max(n, r.head + 1);
  return n;
}

}  // namespace

std::vector<QuantRow> ReadQuantCsv(const std::filesystem::path& path) {
  const CsvTable t = ReadCsv(path);
  std::vector<QuantRow> rows;
  for (size_t i = 0; i < t.rows.size(); ++i) {
    QuantRow r;
    r.strategy = t.Text(i, "strategy");
    const std::string& tensor = t.Text(i, "tensor");
    if (tensor != "k" && tensor != "v") {
      ThrowInput("{}: data row {}: tensor '{}' is neither k nor v", t.where, i + 1, tensor);
    }
    r.tensor = tensor == "k" ? KvTensor::kK : KvTensor::kV;
    r.layer = t.Int(i, "layer");
    r.head = t.Int(i, "head");
    r.format = t.Text(i, "format");
    r.head_dim = t.Int(i, "head_dim");
    r.max_abs = t.Number(i, "max_abs");
    r.sse = t.Number(i, "sse");
    r.nmse = t.Number(i, "nmse");
    r.bytes_per_token = t.Number(i, "bytes_per_token");
    if (r.layer < 0 || r.head < 0) {
      ThrowInput("{}: data row {}: negative layer or head", t.where, i + 1);
    }
    rows.push_back(std::move(r));
  }
  return rows;
}

std::vector<AttnRow> ReadAttnCsv(const std::filesystem::path& path) {
  const CsvTable t = ReadCsv(path);
  std::vector<AttnRow> rows;
  for (size_t i = 0; i < t.rows.size(); ++i) {
    AttnRow r;
    r.strategy = t.Text(i, "strategy");
    r.layer = t.Int(i, "layer");
    r.head = t.Text(i, "head") == "all" ? -1 : t.Int(i, "head");
    r.nmse = t.Number(i, "nmse");
    r.cos = t.Number(i, "cos");
    r.cos_min = t.Number(i, "cos_min");
    rows.push_back(std::move(r));
  }
  return rows;
}

std::vector<AttnPositionRow> ReadAttnPositionsCsv(const std::filesystem::path& path) {
  const CsvTable t = ReadCsv(path);
  std::vector<AttnPositionRow> rows;
  for (size_t i = 0; i < t.rows.size(); ++i) {
    AttnPositionRow r;
    r.strategy = t.Text(i, "strategy");
    r.layer = t.Text(i, "layer") == "all" ? -1 : t.Int(i, "layer");
    r.begin = static_cast<int64_t>(t.Number(i, "position_begin"));
    r.end = static_cast<int64_t>(t.Number(i, "position_end"));
    r.vectors = static_cast<int64_t>(t.Number(i, "vectors"));
    r.nmse = t.Number(i, "nmse");
    r.cos = t.Number(i, "cos");
    rows.push_back(std::move(r));
  }
  return rows;
}

std::string BytesCsv(const std::vector<Strategy>& strategies, const KvGeometry& g,
                     int64_t prompt_len) {
  const double fp16 = 2.0 * 2 * g.num_layers * g.num_kv_heads * g.head_dim;
  std::string out = "strategy,bytes_per_token,per_sequence_bytes,fraction_of_fp16\n";
  for (const Strategy& s : strategies) {
    const ByteCost c = s.Cost(g, prompt_len);
    out += fmt::format("{},{},{},{}\n", CsvField(s.name), CsvNumber(c.per_token),
                       CsvNumber(c.per_sequence), CsvNumber(c.per_token / fp16));
  }
  return out;
}

std::vector<BytesRow> ReadBytesCsv(const std::filesystem::path& path) {
  const CsvTable t = ReadCsv(path);
  std::vector<BytesRow> rows;
  for (size_t i = 0; i < t.rows.size(); ++i) {
    rows.push_back({t.Text(i, "strategy"), t.Number(i, "bytes_per_token"),
                    t.Number(i, "per_sequence_bytes"), t.Number(i, "fraction_of_fp16")});
  }
  return rows;
}

std::vector<BytesRow> BytesFromQuant(const std::vector<QuantRow>& rows) {
  std::vector<BytesRow> out;
  for (const std::string& name : NamesOf(rows)) {
    double bytes = 0, fp16 = 0;
    for (const QuantRow& r : rows) {
      if (r.strategy != name) continue;
      bytes += r.bytes_per_token;
      fp16 += 2.0 * r.head_dim;
    }
    out.push_back({name, bytes, 0, fp16 > 0 ? bytes / fp16 : 0});
  }
  return out;
}

PplData ReadPplJson(const std::filesystem::path& path) {
  PplData data;
  try {
    const auto j = ParseJson(ReadTextFile(path), path.string());
    data.baseline_nll = j.at("baseline").at("nll").get<double>();
    data.baseline_ppl = j.at("baseline").at("ppl").get<double>();
    data.predictions = j.at("baseline").at("tokens").get<int64_t>();
    for (const auto& s : j.at("strategies")) {
      PplRow r;
      r.strategy = s.at("strategy").get<std::string>();
      r.calibrated = s.at("calibrated").get<bool>();
      r.nll = s.at("nll").get<double>();
      r.ppl = s.at("ppl").get<double>();
      r.delta_ppl = s.at("delta_ppl").get<double>();
      r.kl_mean = s.at("kl_mean").get<double>();
      r.kl_max = s.at("kl_max").get<double>();
      r.top1_agree = s.at("top1_agree").get<double>();
      data.rows.push_back(std::move(r));
    }
  } catch (const nlohmann::json::exception& e) {
    ThrowInput("{}: not a kvq ppl JSON report: {}", path.string(), e.what());
  }
  return data;
}

std::vector<std::string> StrategiesOf(const std::vector<QuantRow>& rows) { return NamesOf(rows); }
std::vector<std::string> StrategiesOf(const std::vector<AttnRow>& rows) { return NamesOf(rows); }

double MeanNmse(const std::vector<QuantRow>& rows, const std::string& strategy, KvTensor tensor) {
  double sum = 0;
  int n = 0;
  for (const QuantRow& r : rows) {
    if (r.strategy == strategy && r.tensor == tensor) {
      sum += r.nmse;
      ++n;
    }
  }
  return n ? sum / n : 0;
}

std::vector<HeadShare> DominantKHeads(const std::vector<QuantRow>& rows,
                                      const std::string& strategy, double fraction) {
  std::vector<HeadShare> heads;
  double total = 0;
  for (const QuantRow& r : rows) {
    if (r.strategy != strategy || r.tensor != KvTensor::kK) continue;
    heads.push_back({r.layer, r.head, r.sse, 0});
    total += r.sse;
  }
  if (!(total > 0)) return {};
  std::stable_sort(heads.begin(), heads.end(),
                   [](const HeadShare& a, const HeadShare& b) { return a.sse > b.sse; });
  double covered = 0;
  size_t taken = 0;
  while (taken < heads.size() && covered < fraction * total) {
    heads[taken].share = heads[taken].sse / total;
    covered += heads[taken].sse;
    ++taken;
  }
  heads.resize(taken);
  return heads;
}

std::vector<AttnSummary> SummarizeAttention(const std::vector<AttnRow>& rows, double floor) {
  std::vector<AttnSummary> out;
  for (const std::string& name : NamesOf(rows)) {
    AttnSummary s;
    s.strategy = name;
    double nmse = 0, cos = 0;
    for (const AttnRow& r : rows) {
      if (r.strategy != name || r.head != -1) continue;
      s.cos[r.layer] = r.cos;
      s.nmse[r.layer] = r.nmse;
      nmse += r.nmse;
      cos += r.cos;
      if (s.worst_layer < 0 || r.cos < s.worst_cos) {
        s.worst_layer = r.layer;
        s.worst_cos = r.cos;
        s.worst_nmse = r.nmse;
      }
      if (!(r.cos >= floor)) s.below_floor.push_back(r.layer);
    }
    if (!s.cos.empty()) {
      s.mean_nmse = nmse / static_cast<double>(s.cos.size());
      s.mean_cos = cos / static_cast<double>(s.cos.size());
    }
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<ParetoPoint> ParetoPoints(const std::vector<BytesRow>& bytes,
                                      const std::vector<AttnSummary>& attention) {
  std::vector<ParetoPoint> points;
  for (const AttnSummary& a : attention) {
    for (const BytesRow& b : bytes) {
      if (b.strategy == a.strategy) {
        points.push_back({a.strategy, b.bytes_per_token, a.mean_nmse, a.worst_cos, false});
      }
    }
  }
  for (ParetoPoint& p : points) {
    p.frontier = std::none_of(points.begin(), points.end(), [&](const ParetoPoint& o) {
      return o.bytes_per_token <= p.bytes_per_token && o.error <= p.error &&
             (o.bytes_per_token < p.bytes_per_token || o.error < p.error);
    });
  }
  return points;
}

std::string ParetoCsv(const std::vector<ParetoPoint>& points) {
  std::string out = "strategy,bytes_per_token,attn_nmse_mean,worst_cos,frontier\n";
  for (const ParetoPoint& p : points) {
    out += fmt::format("{},{},{},{},{}\n", CsvField(p.strategy), CsvNumber(p.bytes_per_token),
                       CsvNumber(p.error), CsvNumber(p.worst_cos), p.frontier ? 1 : 0);
  }
  return out;
}

std::vector<ParetoPoint> ReadParetoCsv(const std::filesystem::path& path) {
  const CsvTable t = ReadCsv(path);
  std::vector<ParetoPoint> points;
  for (size_t i = 0; i < t.rows.size(); ++i) {
    points.push_back({t.Text(i, "strategy"), t.Number(i, "bytes_per_token"),
                      t.Number(i, "attn_nmse_mean"), t.Number(i, "worst_cos"),
                      t.Int(i, "frontier") != 0});
  }
  return points;
}

std::vector<BudgetPick> BestUnderBudgets(const std::vector<ParetoPoint>& points) {
  std::vector<double> budgets;
  budgets.reserve(points.size());
  for (const ParetoPoint& p : points) budgets.push_back(p.bytes_per_token);
  std::sort(budgets.begin(), budgets.end());
  budgets.erase(std::unique(budgets.begin(), budgets.end()), budgets.end());
  std::vector<BudgetPick> picks;
  for (double budget : budgets) {
    const ParetoPoint* best = nullptr;
    for (const ParetoPoint& p : points) {
      if (p.bytes_per_token <= budget && (best == nullptr || p.error < best->error)) best = &p;
    }
    if (best != nullptr && (picks.empty() || picks.back().best.strategy != best->strategy)) {
      picks.push_back({budget, *best});
    }
  }
  return picks;
}

std::vector<ModifierEffect> ModifierEffects(const std::vector<QuantRow>& quant,
                                            const std::vector<AttnSummary>& attention,
                                            const std::vector<BytesRow>& bytes) {
  auto attn_of = [&](const std::string& name) -> const AttnSummary* {
    for (const AttnSummary& a : attention) {
      if (a.strategy == name) return &a;
    }
    return nullptr;
  };
  auto bytes_of = [&](const std::string& name) {
    for (const BytesRow& b : bytes) {
      if (b.strategy == name) return b.bytes_per_token;
    }
    return std::numeric_limits<double>::quiet_NaN();
  };
  std::vector<ModifierEffect> out;
  for (const AttnSummary& variant : attention) {
    for (const char* modifier : {"had", "prerope", "bias"}) {
      const std::string tag = std::string("+") + modifier;
      std::string base = variant.strategy;
      bool found = false;
      // A modifier ends at the next '+', ',' or the end of the name.
      for (size_t at = base.find(tag); at != std::string::npos; at = base.find(tag, at)) {
        const size_t end = at + tag.size();
        if (end == base.size() || base[end] == '+' || base[end] == ',') {
          base.erase(at, tag.size());
          found = true;
        } else {
          at = end;
        }
      }
      const AttnSummary* b = found ? attn_of(base) : nullptr;
      if (b == nullptr) continue;
      ModifierEffect e;
      e.modifier = modifier;
      e.base = base;
      e.variant = variant.strategy;
      e.base_bytes = bytes_of(base);
      e.variant_bytes = bytes_of(variant.strategy);
      const double kb = MeanNmse(quant, base, KvTensor::kK);
      e.k_nmse_ratio = kb > 0 ? MeanNmse(quant, variant.strategy, KvTensor::kK) / kb
                              : std::numeric_limits<double>::quiet_NaN();
      e.attn_nmse_ratio = b->mean_nmse > 0 ? variant.mean_nmse / b->mean_nmse
                                           : std::numeric_limits<double>::quiet_NaN();
      out.push_back(std::move(e));
    }
  }
  return out;
}

std::string NmseFigure(const std::vector<QuantRow>& rows, const std::string& context) {
  svg::LineFigure fig;
  fig.title = "KV quantization error by layer";
  fig.subtitle =
      Subtitle(context, fmt::format("mean over {} KV heads; log scale", HeadCount(rows)));
  const int layers = LayerCount(rows);
  for (KvTensor t : {KvTensor::kK, KvTensor::kV}) {
    svg::Panel p;
    p.title = t == KvTensor::kK ? "Keys" : "Values";
    p.x_label = "layer";
    p.y_label = "NMSE (error energy / signal energy)";
    p.x_integer = true;
    p.y_log = true;
    for (const std::string& name : NamesOf(rows)) {
      svg::Series s;
      s.name = name;
      std::vector<double> sum(static_cast<size_t>(layers), 0.0);
      std::vector<int> count(static_cast<size_t>(layers), 0);
      for (const QuantRow& r : rows) {
        if (r.strategy != name || r.tensor != t) continue;
        sum[static_cast<size_t>(r.layer)] += r.nmse;
        ++count[static_cast<size_t>(r.layer)];
      }
      for (int l = 0; l < layers; ++l) {
        const auto i = static_cast<size_t>(l);
        if (count[i] == 0) continue;
        const double v = sum[i] / count[i];
        s.x.push_back(l);
        s.y.push_back(v);
        s.tips.push_back(fmt::format("{} {} layer {}: mean NMSE {}", name, KvTensorName(t), l,
                                     svg::FormatValue(v, 6)));
      }
      p.series.push_back(std::move(s));
    }
    fig.panels.push_back(std::move(p));
  }
  return svg::RenderLines(fig);
}

std::string HeatmapFigure(const std::vector<QuantRow>& rows, const std::string& strategy,
                          const std::string& context) {
  const int layers = LayerCount(rows), heads = HeadCount(rows);
  svg::Heatmap m;
  m.title = "NMSE by layer and KV head: " + strategy;
  m.subtitle = Subtitle(context, "log colour scale");
  m.x_label = "layer";
  m.colour_label = "NMSE (error / signal energy)";
  m.nonpositive_label = "0: stored exactly";
  for (int l = 0; l < layers; ++l) m.cols.push_back(std::to_string(l));
  for (KvTensor t : {KvTensor::kK, KvTensor::kV}) {
    for (int h = 0; h < heads; ++h) {
      m.rows.push_back(fmt::format("{} h{}", t == KvTensor::kK ? "K" : "V", h));
      m.values.emplace_back(static_cast<size_t>(layers), std::numeric_limits<double>::quiet_NaN());
      m.tips.emplace_back(static_cast<size_t>(layers), "no data");
    }
  }
  bool any = false;
  for (const QuantRow& r : rows) {
    if (r.strategy != strategy) continue;
    any = true;
    const size_t row =
        static_cast<size_t>(r.tensor == KvTensor::kK ? 0 : heads) + static_cast<size_t>(r.head);
    const auto col = static_cast<size_t>(r.layer);
    m.values[row][col] = r.nmse;
    m.tips[row][col] = fmt::format("{} layer {} head {}: NMSE {} ({})", KvTensorName(r.tensor),
                                   r.layer, r.head, svg::FormatValue(r.nmse, 6), r.format);
  }
  if (!any) ThrowInput("no rows for strategy '{}'", strategy);
  m.cell_width = layers <= 12 ? 40 : 28;
  return svg::RenderHeatmap(m);
}

std::string PositionFigure(const std::vector<AttnPositionRow>& rows, const std::string& context) {
  svg::LineFigure fig;
  fig.title = "Attention error by position";
  fig.subtitle = Subtitle(context, "NMSE of the attention outputs per position bucket, all layers");
  fig.panel_height = 320;
  svg::Panel p;
  p.x_label = "position in the prompt (bucket end; buckets [0,64), [64,128), [128,256), ...)";
  p.y_label = "attention output NMSE";
  p.x_log = true;
  p.y_log = true;
  std::vector<std::string> names;
  for (const AttnPositionRow& r : rows) {
    if (r.layer >= 0) continue;
    auto at = std::find(names.begin(), names.end(), r.strategy);
    if (at == names.end()) {
      names.push_back(r.strategy);
      p.series.push_back({});
      p.series.back().name = r.strategy;
      at = names.end() - 1;
    }
    svg::Series& s = p.series[static_cast<size_t>(at - names.begin())];
    s.x.push_back(static_cast<double>(r.end));
    s.y.push_back(r.nmse);
    s.tips.push_back(fmt::format("{} positions [{}, {}): NMSE {}, cos {:.6f} ({} vectors)",
                                 r.strategy, r.begin, r.end, svg::FormatValue(r.nmse, 6), r.cos,
                                 r.vectors));
  }
  fig.panels.push_back(std::move(p));
  return svg::RenderLines(fig);
}

std::string CosFigure(const std::vector<AttnRow>& rows, double floor, const std::string& context) {
  svg::LineFigure fig;
  fig.title = "Attention output fidelity by layer";
  fig.subtitle = Subtitle(context, "mean cosine of original vs quantized-KV outputs");
  fig.panel_height = 320;
  svg::Panel p;
  p.x_label = "layer";
  p.y_label = "cosine similarity (1 = identical)";
  p.x_integer = true;
  p.ref_lines.push_back({floor, fmt::format("quality floor {}", floor)});
  const std::vector<AttnSummary> summaries = SummarizeAttention(rows, floor);
  for (size_t i = 0; i < summaries.size(); ++i) {
    const AttnSummary& a = summaries[i];
    svg::Series s;
    s.name = a.strategy;
    for (const auto& [layer, cos] : a.cos) {
      s.x.push_back(layer);
      s.y.push_back(cos);
      s.tips.push_back(fmt::format("{} layer {}: cos {:.6f}, NMSE {}", a.strategy, layer, cos,
                                   svg::FormatValue(a.nmse.at(layer), 6)));
    }
    p.series.push_back(std::move(s));
    // Label the worst point of each strategy that drops below the floor,
    // and of the overall worst one.
    if (a.worst_layer >= 0 && !a.below_floor.empty()) {
      p.marks.push_back({static_cast<double>(a.worst_layer), a.worst_cos,
                         fmt::format("{:.3f} (L{})", a.worst_cos, a.worst_layer),
                         static_cast<int>(i)});
    }
  }
  if (p.marks.empty() && !summaries.empty()) {
    const auto worst = std::min_element(
        summaries.begin(), summaries.end(),
        [](const AttnSummary& a, const AttnSummary& b) { return a.worst_cos < b.worst_cos; });
    if (worst->worst_layer >= 0) {
      p.marks.push_back({static_cast<double>(worst->worst_layer), worst->worst_cos,
                         fmt::format("worst {:.4f} (L{})", worst->worst_cos, worst->worst_layer),
                         static_cast<int>(worst - summaries.begin())});
    }
  }
  fig.panels.push_back(std::move(p));
  return svg::RenderLines(fig);
}

std::string BytesFigure(const std::vector<BytesRow>& rows, const std::string& context) {
  svg::BarFigure f;
  f.title = "KV-cache size per strategy";
  f.subtitle = context;
  f.x_label = "bytes per token (all layers, K and V)";
  svg::Series s;
  s.name = "bytes/token";
  double fp16 = 0;
  for (const BytesRow& r : rows) {
    f.categories.push_back(r.strategy);
    s.y.push_back(r.bytes_per_token);
    s.tips.push_back(fmt::format("{}: {} bytes/token ({:.1f}% of fp16), +{} bytes per sequence",
                                 r.strategy, svg::FormatValue(r.bytes_per_token, 8),
                                 100 * r.fraction_of_fp16, svg::FormatValue(r.per_sequence, 8)));
    if (r.fraction_of_fp16 > 0) fp16 = r.bytes_per_token / r.fraction_of_fp16;
  }
  f.series.push_back(std::move(s));
  if (fp16 > 0) f.ref_lines.push_back({fp16, fmt::format("fp16 {}", svg::FormatValue(fp16, 8))});
  return svg::RenderBars(f);
}

std::string ParetoFigure(const std::vector<ParetoPoint>& points, const std::string& context) {
  svg::LineFigure fig;
  fig.title = "Size vs attention error";
  fig.subtitle = Subtitle(context, "line: the Pareto frontier");
  fig.panel_height = 320;
  svg::Panel p;
  p.series.emplace_back();  // The frontier, filled below, drawn under the points.
  p.x_label = "bytes per token";
  p.y_label = "mean attention NMSE over layers";
  p.y_log = true;
  std::vector<ParetoPoint> frontier;
  for (const ParetoPoint& pt : points) {
    svg::Series s;
    s.name = pt.strategy;
    s.kind = svg::SeriesKind::kPoints;
    s.x = {pt.bytes_per_token};
    s.y = {pt.error};
    s.tips = {fmt::format("{}: {} bytes/token, attention NMSE {}, worst-layer cos {:.6f}{}",
                          pt.strategy, svg::FormatValue(pt.bytes_per_token, 8),
                          svg::FormatValue(pt.error, 6), pt.worst_cos,
                          pt.frontier ? " (on the frontier)" : "")};
    p.series.push_back(std::move(s));
    if (pt.frontier) frontier.push_back(pt);
  }
  std::sort(frontier.begin(), frontier.end(), [](const ParetoPoint& a, const ParetoPoint& b) {
    return a.bytes_per_token < b.bytes_per_token;
  });
  svg::Series& line = p.series.front();
  line.name = "Pareto frontier";
  line.colour = "#555555";
  for (const ParetoPoint& pt : frontier) {
    line.x.push_back(pt.bytes_per_token);
    line.y.push_back(pt.error);
  }
  fig.panels.push_back(std::move(p));
  return svg::RenderLines(fig);
}

std::string PplFigure(const PplData& ppl, const std::string& context) {
  svg::BarFigure f;
  f.title = "Perplexity change with the quantized cache";
  f.subtitle = Subtitle(context, fmt::format("baseline perplexity {:.4f} over {} predictions",
                                             ppl.baseline_ppl, ppl.predictions));
  f.x_label = "perplexity - baseline perplexity";
  svg::Series s;
  s.name = "delta ppl";
  for (const PplRow& r : ppl.rows) {
    f.categories.push_back(r.strategy);
    s.y.push_back(r.delta_ppl);
    s.tips.push_back(
        fmt::format("{}: ppl {:.6f} (delta {:+.6f}), KL mean {}, top-1 agreement "
                    "{:.4f}{}",
                    r.strategy, r.ppl, r.delta_ppl, svg::FormatValue(r.kl_mean, 6), r.top1_agree,
                    r.calibrated ? ", calibrated scales" : ""));
  }
  f.series.push_back(std::move(s));
  return svg::RenderBars(f);
}

std::string KlFigure(const PplData& ppl, const std::string& context) {
  svg::BarFigure f;
  f.title = "Next-token KL divergence from the unquantized model";
  f.subtitle = Subtitle(context, "log scale");
  f.x_label = "mean KL(p || q) per token (nats)";
  f.x_log = true;
  svg::Series s;
  s.name = "KL mean";
  for (const PplRow& r : ppl.rows) {
    f.categories.push_back(r.strategy);
    s.y.push_back(r.kl_mean);
    s.tips.push_back(fmt::format("{}: KL mean {}, KL max {}, top-1 agreement {:.4f}", r.strategy,
                                 svg::FormatValue(r.kl_mean, 6), svg::FormatValue(r.kl_max, 6),
                                 r.top1_agree));
  }
  f.series.push_back(std::move(s));
  return svg::RenderBars(f);
}

}  // namespace kvq::report
