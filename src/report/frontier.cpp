#include "kvq/report/frontier.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "kvq/report/svg.h"

namespace kvq::report {
namespace {

constexpr double kNan = std::numeric_limits<double>::quiet_NaN();

std::string Tip(const FrontierEntry& e) {
  std::string tip = fmt::format("{}: {} bytes/token, worst-layer cos {:.6f} (layer {})", e.strategy,
                                svg::FormatValue(e.bytes_per_token, 8), e.worst_cos, e.worst_layer);
  if (e.plan && !std::isnan(e.predicted_worst_cos)) {
    tip += fmt::format(", predicted {:.6f}", e.predicted_worst_cos);
  }
  if (!std::isnan(e.kl_mean)) tip += ", mean KL " + svg::FormatValue(e.kl_mean);
  return tip;
}

}  // namespace

std::vector<FrontierEntry> FrontierEntries(const std::vector<BytesRow>& bytes,
                                           const std::vector<AttnSummary>& attention,
                                           const PplData* ppl,
                                           const std::map<std::string, double>& predicted) {
  std::vector<FrontierEntry> out;
  for (const BytesRow& b : bytes) {
    const auto a = std::find_if(attention.begin(), attention.end(),
                                [&](const AttnSummary& s) { return s.strategy == b.strategy; });
    if (a == attention.end() || a->cos.empty()) continue;
    FrontierEntry e;
    e.strategy = b.strategy;
    e.bytes_per_token = b.bytes_per_token;
    e.worst_cos = a->worst_cos;
    e.worst_layer = a->worst_layer;
    const auto p = predicted.find(b.strategy);
    e.plan = p != predicted.end();
    e.predicted_worst_cos = e.plan ? p->second : kNan;
    e.kl_mean = kNan;
    if (ppl != nullptr) {
      for (const PplRow& r : ppl->rows) {
        if (r.strategy == b.strategy) e.kl_mean = r.kl_mean;
      }
    }
    out.push_back(std::move(e));
  }
  std::stable_sort(out.begin(), out.end(), [](const FrontierEntry& x, const FrontierEntry& y) {
    return x.bytes_per_token < y.bytes_per_token;
  });
  return out;
}

std::optional<FrontierEntry> SmallestWithCos(const std::vector<FrontierEntry>& entries,
                                             double min_cos) {
  std::optional<FrontierEntry> best;
  for (const FrontierEntry& e : entries) {
    if (!(e.worst_cos >= min_cos)) continue;
    if (!best || e.bytes_per_token < best->bytes_per_token ||
        (e.bytes_per_token == best->bytes_per_token && e.worst_cos > best->worst_cos)) {
      best = e;
    }
  }
  return best;
}

std::optional<FrontierEntry> SmallestWithKl(const std::vector<FrontierEntry>& entries,
                                            double max_kl) {
  std::optional<FrontierEntry> best;
  for (const FrontierEntry& e : entries) {
    if (!(e.kl_mean <= max_kl)) continue;
    if (!best || e.bytes_per_token < best->bytes_per_token ||
        (e.bytes_per_token == best->bytes_per_token && e.kl_mean < best->kl_mean)) {
      best = e;
    }
  }
  return best;
}

std::string FrontierFigure(const std::vector<FrontierEntry>& entries, const std::string& reference,
                           double kl_guide, const std::string& context) {
  svg::LineFigure figure;
  figure.title = "Compression frontier: cache size against attention and KL";
  figure.subtitle = context + "  \u00b7  line: the planner's plans; points: uniform strategies";
  const bool has_kl = std::any_of(entries.begin(), entries.end(),
                                  [](const FrontierEntry& e) { return e.kl_mean > 0; });
  for (int panel_index = 0; panel_index < (has_kl ? 2 : 1); ++panel_index) {
    const bool kl = panel_index == 1;
    svg::Panel panel;
    panel.title = kl ? "Mean next-token KL" : "1 - worst-layer attention cosine";
    panel.x_label = "bytes per token";
    panel.y_label = kl ? "mean KL (nats, log)" : "1 - worst-layer cos (log)";
    panel.y_log = true;
    svg::Series plans{"plans (ladder)", {}, {}, {}, svg::SeriesKind::kLine, ""};
    svg::Series uniform{"uniform strategies", {}, {}, {}, svg::SeriesKind::kPoints, ""};
    svg::Series ref{reference + " (reference study)", {}, {}, {}, svg::SeriesKind::kPoints, ""};
    for (const FrontierEntry& e : entries) {
      const double y = kl ? e.kl_mean : 1 - e.worst_cos;
      if (!(y > 0) || !std::isfinite(y)) continue;  // Not placeable on a log axis.
      svg::Series& s = e.plan ? plans : (e.strategy == reference ? ref : uniform);
      s.x.push_back(e.bytes_per_token);
      s.y.push_back(y);
      s.tips.push_back(Tip(e));
      if (e.strategy == reference) {
        panel.marks.push_back({e.bytes_per_token, y, reference, -1});
      }
    }
    for (svg::Series* s : {&plans, &uniform, &ref}) {
      if (!s->x.empty()) panel.series.push_back(std::move(*s));
    }
    if (kl) {
      if (kl_guide > 0) panel.ref_lines.push_back({kl_guide, "q8_0's KL"});
    } else {
      panel.ref_lines.push_back({1 - 0.99, "cos 0.99"});
      panel.ref_lines.push_back({1 - 0.998, "cos 0.998"});
    }
    figure.panels.push_back(std::move(panel));
  }
  return svg::RenderLines(figure);
}

}  // namespace kvq::report
