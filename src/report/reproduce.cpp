#include "kvq/report/reproduce.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <tuple>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "kvq/common/csv.h"
#include "kvq/common/error.h"
#include "kvq/common/io.h"
#include "kvq/report/report.h"
#include "kvq/report/svg.h"
#include "kvq/tokenizer/corpus.h"

namespace kvq::report {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr double kNan = std::numeric_limits<double>::quiet_NaN();

// The published tables' column names (the quant files have no header row).
constexpr const char* kQuantHeader =
    "file,layer,tensor,tokens,kv_head,head_dim,strategy,max_abs,sse,mse\n";

// The six outlier K heads the study found, and its headline figures.
constexpr std::pair<int, int> kOutlierHeads[] = {{0, 0}, {0, 1}, {1, 1}, {2, 0}, {2, 1}, {8, 0}};
constexpr int kSpotLayers[] = {0, 8, 16};
constexpr double kStrat3Floor = 0.998;
constexpr int kStrat3WorstLayer = 11;
constexpr double kCastRatio = 4;
struct PublishedBytes {
  const char* strategy;
  double bytes;
};
constexpr PublishedBytes kPublishedBytes[] = {
    {"fp16", 12288}, {"strat1", 6144}, {"strat2", 6528}, {"strat3", 6720}};

std::string Lower(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

std::string G(double v, int digits = 4) { return svg::FormatValue(v, digits); }

std::string HeadName(KvTensor t, int layer, int head) {
  return fmt::format("{} L{} h{}", t == KvTensor::kK ? "K" : "V", layer, head);
}

std::string AttnName(int layer, int head) {
  return head < 0 ? fmt::format("L{} all", layer) : fmt::format("L{} q{}", layer, head);
}

bool Has(const std::vector<QuantRow>& quant, const std::string& strategy) {
  return std::any_of(quant.begin(), quant.end(),
                     [&](const QuantRow& r) { return r.strategy == strategy; });
}

double SseSum(const std::vector<QuantRow>& quant, const std::string& strategy, KvTensor t) {
  double sum = 0;
  for (const QuantRow& r : quant) {
    if (r.strategy == strategy && r.tensor == t) sum += r.sse;
  }
  return sum;
}

double PublishedSseSum(const PublishedResults& p, const std::string& corpus, int strategy,
                       KvTensor t) {
  double sum = 0;
  for (const PublishedQuantRow& r : p.quant) {
    if (r.corpus == corpus && r.strategy == strategy && r.tensor == t) sum += r.sse;
  }
  return sum;
}

// Rank (1 = largest) of each outlier head among the K heads by SSE, from
// (layer, head) -> sse; 0 when the head is absent.
std::vector<double> OutlierRanks(const std::map<std::pair<int, int>, double>& k_sse) {
  std::vector<std::pair<double, std::pair<int, int>>> order;
  order.reserve(k_sse.size());
  for (const auto& [key, sse] : k_sse) order.push_back({sse, key});
  std::stable_sort(order.begin(), order.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<double> ranks;
  for (const auto& head : kOutlierHeads) {
    double rank = 0;
    for (size_t i = 0; i < order.size(); ++i) {
      if (order[i].second == head) rank = static_cast<double>(i + 1);
    }
    ranks.push_back(rank);
  }
  return ranks;
}

std::string RankText(const std::vector<double>& ranks) {
  std::string out;
  for (size_t i = 0; i < ranks.size(); ++i) {
    out +=
        fmt::format("{}({},{}) #{}", i ? " " : "", kOutlierHeads[i].first, kOutlierHeads[i].second,
                    ranks[i] > 0 ? fmt::format("{:.0f}", ranks[i]) : std::string("-"));
  }
  return out;
}

// Layer rows (head -1) of one strategy: layer -> (nmse, cos).
std::map<int, std::pair<double, double>> LayerAttn(const std::vector<AttnRow>& attn,
                                                   const std::string& strategy) {
  std::map<int, std::pair<double, double>> out;
  for (const AttnRow& r : attn) {
    if (r.strategy == strategy && r.head == -1) out[r.layer] = {r.nmse, r.cos};
  }
  return out;
}

std::map<int, std::pair<double, double>> PublishedLayerAttn(const PublishedResults& p,
                                                            const std::string& corpus,
                                                            int strategy) {
  std::map<int, std::pair<double, double>> out;
  for (const PublishedAttnRow& r : p.attn) {
    if (r.corpus == corpus && r.strategy == strategy && r.head == -1) {
      out[r.layer] = {r.nmse, r.cos};
    }
  }
  return out;
}

double RatioOff(double measured, double published) {
  return std::max(measured / published, published / measured);
}

Claim KvRatioClaim(const PublishedResults& p, const std::string& corpus,
                   const std::vector<QuantRow>& quant) {
  Claim c;
  c.id = "kv-ratio";
  c.claim = "V is far more compressible than K (K/V squared-error ratio, strat1 | strat2)";
  c.tolerance = fmt::format("each within x/\u00f7 {}", kRatioTolerance);
  std::string pub, mea;
  bool missing = false, within = true;
  std::string off;
  for (int s : {1, 2}) {
    const std::string name = fmt::format("strat{}", s);
    const double pr =
        PublishedSseSum(p, corpus, s, KvTensor::kK) / PublishedSseSum(p, corpus, s, KvTensor::kV);
    c.published_values.push_back(pr);
    pub += fmt::format("{}{}", pub.empty() ? "" : " | ", G(pr, 3));
    if (!Has(quant, name)) {
      missing = true;
      c.measured_values.push_back(kNan);
      mea += fmt::format("{}-", mea.empty() ? "" : " | ");
      continue;
    }
    const double mr = SseSum(quant, name, KvTensor::kK) / SseSum(quant, name, KvTensor::kV);
    c.measured_values.push_back(mr);
    mea += fmt::format("{}{}", mea.empty() ? "" : " | ", G(mr, 3));
    if (!(RatioOff(mr, pr) <= kRatioTolerance)) {
      within = false;
      off +=
          fmt::format("{}{}: x{} of the published", off.empty() ? "" : "; ", name, G(mr / pr, 3));
    }
  }
  c.published = pub;
  c.measured = mea;
  if (Has(quant, "strat1")) {
    const double k = MeanNmse(quant, "strat1", KvTensor::kK);
    const double v = MeanNmse(quant, "strat1", KvTensor::kV);
    if (v > 0) c.detail = fmt::format("kvq's mean-NMSE K/V ratio under strat1: {}", G(k / v, 3));
  }
  if (missing) {
    c.verdict = Verdict::kMissing;
    c.detail = "the run lacks strat1 or strat2";
  } else {
    c.verdict = within ? Verdict::kReproduced : Verdict::kDiffers;
    if (!within) c.detail = off;
  }
  return c;
}

Claim OutlierClaim(const PublishedResults& p, const std::string& corpus,
                   const std::vector<QuantRow>& quant) {
  Claim c;
  c.id = "outlier-heads";
  c.claim =
      "six K heads (0,0) (0,1) (1,1) (2,0) (2,1) (8,0) carry most of the K error (rank among all "
      "K heads by strat1 squared error)";
  c.tolerance = "the same six are the top 6";
  std::map<std::pair<int, int>, double> pub, mea;
  for (const PublishedQuantRow& r : p.quant) {
    if (r.corpus == corpus && r.strategy == 1 && r.tensor == KvTensor::kK) {
      pub[{r.layer, r.head}] = r.sse;
    }
  }
  for (const QuantRow& r : quant) {
    if (r.strategy == "strat1" && r.tensor == KvTensor::kK) mea[{r.layer, r.head}] = r.sse;
  }
  c.published_values = OutlierRanks(pub);
  c.published = RankText(c.published_values);
  if (mea.empty()) {
    c.verdict = Verdict::kMissing;
    c.measured = "-";
    c.detail = "the run lacks strat1";
    return c;
  }
  c.measured_values = OutlierRanks(mea);
  c.measured = RankText(c.measured_values);
  const bool top6 = std::all_of(c.measured_values.begin(), c.measured_values.end(),
                                [](double r) { return r >= 1 && r <= 6; });
  c.verdict = top6 ? Verdict::kReproduced : Verdict::kDiffers;
  if (!top6) {
    std::vector<std::pair<double, std::pair<int, int>>> order;
    order.reserve(mea.size());
    for (const auto& [key, sse] : mea) order.push_back({sse, key});
    std::stable_sort(order.begin(), order.end(),
                     [](const auto& a, const auto& b) { return a.first > b.first; });
    std::string top;
    for (size_t i = 0; i < order.size() && i < 6; ++i) {
      top += fmt::format("{}({},{})", i ? " " : "", order[i].second.first, order[i].second.second);
    }
    c.detail = "kvq's top 6: " + top;
  }
  return c;
}

Claim SpotCosClaim(const PublishedResults& p, const std::string& corpus,
                   const std::vector<AttnRow>& attn) {
  Claim c;
  c.id = "strat1-cos";
  c.claim = "strat1 (int8, one scale per head) attention cosine at layers 0, 8, 16";
  c.tolerance = fmt::format("each within \u00b1{}", kCosTolerance);
  const auto pub = PublishedLayerAttn(p, corpus, 1);
  if (pub.empty()) {
    c.verdict = Verdict::kNotPublished;
    c.published = c.measured = "-";
    c.detail = "the study published attention on C4 only";
    return c;
  }
  const auto mea = LayerAttn(attn, "strat1");
  std::string pt, mt, off;
  bool missing = false;
  for (int l : kSpotLayers) {
    const double pc = pub.count(l) ? pub.at(l).second : kNan;
    c.published_values.push_back(pc);
    pt += fmt::format("{}{:.3f}", pt.empty() ? "" : " | ", pc);
    if (!mea.count(l)) {
      missing = true;
      c.measured_values.push_back(kNan);
      mt += fmt::format("{}-", mt.empty() ? "" : " | ");
      continue;
    }
    const double mc = mea.at(l).second;
    c.measured_values.push_back(mc);
    mt += fmt::format("{}{:.3f}", mt.empty() ? "" : " | ", mc);
    if (!(std::fabs(mc - pc) <= kCosTolerance)) {
      off += fmt::format("{}layer {}: {:+.4f}", off.empty() ? "" : "; ", l, mc - pc);
    }
  }
  c.published = pt;
  c.measured = mt;
  if (missing) {
    c.verdict = Verdict::kMissing;
    c.detail = "the run lacks strat1's attention at layers 0, 8 and 16";
  } else {
    c.verdict = off.empty() ? Verdict::kReproduced : Verdict::kDiffers;
    c.detail = off;
  }
  return c;
}

Claim FloorClaim(const PublishedResults& p, const std::string& corpus,
                 const std::vector<AttnRow>& attn, int num_layers) {
  Claim c;
  c.id = "strat3-floor";
  c.claim = "strat3 keeps attention cosine >= 0.998 in every layer";
  c.tolerance = fmt::format("worst layer >= {}", G(kStrat3Floor - kFloorTolerance, 6));
  const auto pub = PublishedLayerAttn(p, corpus, 3);
  if (pub.empty()) {
    c.verdict = Verdict::kNotPublished;
    c.published = c.measured = "-";
    c.detail = "the study published attention on C4 only";
    return c;
  }
  auto worst = [](const std::map<int, std::pair<double, double>>& m) {
    std::pair<int, double> w{-1, 2.0};
    for (const auto& [l, v] : m) {
      if (v.second < w.second) w = {l, v.second};
    }
    return w;
  };
  const auto pw = worst(pub);
  c.published_values = {pw.second};
  c.published = fmt::format("min {:.4f} (layer {})", pw.second, pw.first);
  const auto mea = LayerAttn(attn, "strat3");
  if (static_cast<int>(mea.size()) < num_layers || mea.empty()) {
    c.verdict = Verdict::kMissing;
    c.measured = "-";
    c.detail = "the run lacks strat3's attention in every layer";
    return c;
  }
  const auto mw = worst(mea);
  c.measured_values = {mw.second};
  c.measured = fmt::format("min {:.4f} (layer {})", mw.second, mw.first);
  const bool ok = mw.second >= kStrat3Floor - kFloorTolerance;
  c.verdict = ok ? Verdict::kReproduced : Verdict::kDiffers;
  if (!ok) {
    int below = 0;
    for (const auto& [l, v] : mea) below += v.second < kStrat3Floor ? 1 : 0;
    c.detail = fmt::format("{} layers below 0.998; worst {:.4f} lower than the bound", below,
                           kStrat3Floor - kFloorTolerance - mw.second);
  }
  return c;
}

Claim WorstLayerClaim(const PublishedResults& p, const std::string& corpus,
                      const std::vector<AttnRow>& attn) {
  Claim c;
  c.id = "strat3-worst";
  c.claim = "strat3's worst layer is 11, with attention NMSE 2.2e-3";
  c.tolerance = fmt::format("layer 11's NMSE within x/\u00f7 {}, its cos within {} of the worst",
                            kWorstNmseTolerance, G(kWorstLayerCosSlack));
  const auto pub = PublishedLayerAttn(p, corpus, 3);
  if (pub.empty() || !pub.count(kStrat3WorstLayer)) {
    c.verdict = Verdict::kNotPublished;
    c.published = c.measured = "-";
    c.detail = "the study published attention on C4 only";
    return c;
  }
  const auto [pn, pc] = pub.at(kStrat3WorstLayer);
  c.published_values = {pn, pc};
  c.published = fmt::format("L11 NMSE {} cos {:.4f}", G(pn, 3), pc);
  const auto mea = LayerAttn(attn, "strat3");
  if (!mea.count(kStrat3WorstLayer)) {
    c.verdict = Verdict::kMissing;
    c.measured = "-";
    c.detail = "the run lacks strat3's attention at layer 11";
    return c;
  }
  const auto [mn, mc] = mea.at(kStrat3WorstLayer);
  std::pair<int, double> worst{-1, 2.0};
  for (const auto& [l, v] : mea) {
    if (v.second < worst.second) worst = {l, v.second};
  }
  c.measured_values = {mn, mc};
  c.measured = fmt::format("L11 NMSE {} cos {:.4f}; worst L{} {:.4f}", G(mn, 3), mc, worst.first,
                           worst.second);
  const bool nmse_ok = RatioOff(mn, pn) <= kWorstNmseTolerance;
  const bool worst_ok = mc - worst.second <= kWorstLayerCosSlack;
  c.verdict = nmse_ok && worst_ok ? Verdict::kReproduced : Verdict::kDiffers;
  std::string off;
  if (!nmse_ok) off = fmt::format("layer 11's NMSE is x{} of the published", G(mn / pn, 3));
  if (!worst_ok) {
    off += fmt::format("{}layer {} is worse than 11 by {} in cos", off.empty() ? "" : "; ",
                       worst.first, G(mc - worst.second, 3));
  }
  c.detail = off;
  return c;
}

Claim BytesClaim(const std::vector<BytesRow>& bytes, const KvGeometry& g) {
  Claim c;
  c.id = "bytes";
  c.claim = "bytes/token: fp16 | strat1 | strat2 | strat3";
  c.tolerance = "exact";
  bool missing = false, same = true;
  std::string pt, mt;
  for (const PublishedBytes& b : kPublishedBytes) {
    double m = kNan;
    if (std::string(b.strategy) == "fp16") {
      m = 2.0 * 2 * g.num_layers * g.num_kv_heads * g.head_dim;
    } else {
      for (const BytesRow& r : bytes) {
        if (r.strategy == b.strategy) m = r.bytes_per_token;
      }
    }
    c.published_values.push_back(b.bytes);
    c.measured_values.push_back(m);
    pt += fmt::format("{}{:.0f}", pt.empty() ? "" : " | ", b.bytes);
    mt += (mt.empty() ? "" : " | ") + (std::isnan(m) ? std::string("-") : G(m, 8));
    if (std::isnan(m)) {
      missing = true;
    } else if (!(std::fabs(m - b.bytes) < 0.5)) {
      same = false;
    }
  }
  c.published = pt;
  c.measured = mt;
  c.verdict = missing ? Verdict::kMissing : (same ? Verdict::kReproduced : Verdict::kDiffers);
  if (missing) c.detail = "the run lacks strat1, strat2 or strat3";
  return c;
}

Claim CastClaim(const std::vector<QuantRow>& quant) {
  Claim c;
  c.id = "cast-bug";
  c.claim =
      "the cast bug: (int8_t)x truncates toward zero, about 4x the squared error of rounding "
      "(int8:tensor+trunc vs strat1, K and V)";
  c.tolerance = fmt::format("ratio in [{}, {}]", G(kCastRatioLo), G(kCastRatioHi));
  c.published = "about 4x";
  c.published_values = {kCastRatio};
  // The truncating strategy: every row of it is int8:tensor+trunc.
  std::string trunc;
  for (const std::string& s : StrategiesOf(quant)) {
    const bool all = std::all_of(quant.begin(), quant.end(), [&](const QuantRow& r) {
      return r.strategy != s || r.format == "int8:tensor+trunc";
    });
    if (all) {
      trunc = s;
      break;
    }
  }
  if (trunc.empty() || !Has(quant, "strat1")) {
    c.verdict = Verdict::kMissing;
    c.measured = "-";
    c.detail =
        "the run lacks strat1 or a strategy with int8:tensor+trunc everywhere (kvq run's "
        "defaults include k=int8:tensor+trunc,v=int8:tensor+trunc)";
    return c;
  }
  const double ratio =
      (SseSum(quant, trunc, KvTensor::kK) + SseSum(quant, trunc, KvTensor::kV)) /
      (SseSum(quant, "strat1", KvTensor::kK) + SseSum(quant, "strat1", KvTensor::kV));
  c.measured_values = {ratio};
  c.measured = fmt::format("{}x", G(ratio, 3));
  const bool ok = ratio >= kCastRatioLo && ratio <= kCastRatioHi;
  c.verdict = ok ? Verdict::kReproduced : Verdict::kDiffers;
  if (!ok)
    c.detail = fmt::format("{}x is outside [{}, {}]", G(ratio, 3), kCastRatioLo, kCastRatioHi);
  return c;
}

double Median(std::vector<double> v) {
  if (v.empty()) return kNan;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Fills correlation, ratios and the verdict from the joined rows.
void Finish(Agreement& a) {
  const size_t n = a.published.size();
  a.correlation = kNan;
  a.worst_ratio = kNan;
  a.median_ratio = kNan;
  if (n == 0) {
    a.within = false;
    return;
  }
  double sx = 0, sy = 0;
  for (size_t i = 0; i < n; ++i) {
    sx += std::log10(a.published[i]);
    sy += std::log10(a.measured[i]);
  }
  const double mx = sx / static_cast<double>(n), my = sy / static_cast<double>(n);
  double sxx = 0, syy = 0, sxy = 0;
  std::vector<double> ratios;
  a.worst_ratio = 0;
  for (size_t i = 0; i < n; ++i) {
    const double dx = std::log10(a.published[i]) - mx, dy = std::log10(a.measured[i]) - my;
    sxx += dx * dx;
    syy += dy * dy;
    sxy += dx * dy;
    const double r = a.measured[i] / a.published[i];
    ratios.push_back(r);
    const double off = std::max(r, 1 / r);
    if (off > a.worst_ratio) {
      a.worst_ratio = off;
      a.worst_label = a.labels[i];
    }
  }
  if (n >= 3 && sxx > 0 && syy > 0) a.correlation = sxy / std::sqrt(sxx * syy);
  a.median_ratio = Median(ratios);
  a.within = a.correlation >= kMinCorrelation && a.worst_ratio <= a.tolerance;
}

// Adds a joined row when both values can go on a log scale.
void AddRow(Agreement& a, const std::string& label, double published, double measured) {
  if (!(published > 0) || !(measured > 0) || !std::isfinite(published) ||
      !std::isfinite(measured)) {
    ++a.rows_nonpositive;
    return;
  }
  a.labels.push_back(label);
  a.published.push_back(published);
  a.measured.push_back(measured);
}

std::vector<Agreement> Agreements(const PublishedResults& p, const std::string& corpus,
                                  const std::vector<QuantRow>& quant,
                                  const std::vector<AttnRow>& attn) {
  std::vector<Agreement> out;
  using Key = std::tuple<std::string, KvTensor, int, int>;
  std::map<Key, const QuantRow*> q;
  for (const QuantRow& r : quant) q[{r.strategy, r.tensor, r.layer, r.head}] = &r;
  struct QuantQuantity {
    const char* quantity;
    int strategy;
    bool max_abs;
    double tolerance;
  };
  for (const QuantQuantity& qq :
       {QuantQuantity{"max|x|", 1, true, 1.05}, QuantQuantity{"SSE", 1, false, 1.15},
        QuantQuantity{"SSE", 2, false, 1.15}}) {
    Agreement a;
    a.quantity = qq.quantity;
    a.strategy = fmt::format("strat{}", qq.strategy);
    a.published_file = fmt::format("quant_{}_s{}.csv", corpus, qq.strategy);
    a.tolerance = qq.tolerance;
    for (const PublishedQuantRow& r : p.quant) {
      if (r.corpus != corpus || r.strategy != qq.strategy) continue;
      const auto it = q.find({a.strategy, r.tensor, r.layer, r.head});
      if (it == q.end()) {
        ++a.rows_missing;
        continue;
      }
      AddRow(a, HeadName(r.tensor, r.layer, r.head), qq.max_abs ? r.max_abs : r.sse,
             qq.max_abs ? it->second->max_abs : it->second->sse);
    }
    Finish(a);
    out.push_back(std::move(a));
  }
  std::map<std::tuple<std::string, int, int>, const AttnRow*> at;
  for (const AttnRow& r : attn) at[{r.strategy, r.layer, r.head}] = &r;
  for (int s : {1, 3}) {
    for (bool cos : {false, true}) {
      Agreement a;
      a.quantity = cos ? "1 - attention cos" : "attention NMSE";
      a.strategy = fmt::format("strat{}", s);
      a.published_file = fmt::format("attn_{}_s{}.csv", corpus, s);
      a.tolerance = 1.5;
      bool any = false;
      for (const PublishedAttnRow& r : p.attn) {
        if (r.corpus != corpus || r.strategy != s) continue;
        any = true;
        const auto it = at.find({a.strategy, r.layer, r.head});
        if (it == at.end()) {
          ++a.rows_missing;
          continue;
        }
        AddRow(a, AttnName(r.layer, r.head), cos ? 1 - r.cos : r.nmse,
               cos ? 1 - it->second->cos : it->second->nmse);
      }
      if (!any) continue;  // Not published for this corpus.
      Finish(a);
      out.push_back(std::move(a));
    }
  }
  return out;
}

CsvTable ReadPublishedCsv(const fs::path& path, bool add_header) {
  const std::string text = ReadTextFile(path);
  return ParseCsv(add_header ? kQuantHeader + text : text, path.string());
}

}  // namespace

const char* VerdictName(Verdict verdict) {
  switch (verdict) {
    case Verdict::kReproduced:
      return "reproduced";
    case Verdict::kDiffers:
      return "differs";
    case Verdict::kMissing:
      return "missing";
    case Verdict::kNotPublished:
      return "not published";
  }
  return "?";
}

bool Reproduction::AllReproduced() const {
  return std::all_of(claims.begin(), claims.end(), [](const Claim& c) {
    return c.verdict == Verdict::kReproduced || c.verdict == Verdict::kNotPublished;
  });
}

fs::path PublishedDataDir() { return DataDir() / "reference" / "kvmix"; }

PublishedResults LoadPublished(const fs::path& dir) {
  PublishedResults p;
  for (const char* corpus : {"c4", "wikitext"}) {
    for (int s : {1, 2}) {
      const CsvTable t = ReadPublishedCsv(dir / fmt::format("quant_{}_s{}.csv", corpus, s), true);
      for (size_t i = 0; i < t.rows.size(); ++i) {
        PublishedQuantRow r;
        r.corpus = corpus;
        r.strategy = t.Int(i, "strategy");
        const std::string& tensor = t.Text(i, "tensor");
        if ((tensor != "k" && tensor != "v") || r.strategy != s) {
          ThrowInput("{}: row {}: tensor '{}' / strategy {} is not k|v / {}", t.where, i + 1,
                     tensor, r.strategy, s);
        }
        r.tensor = tensor == "k" ? KvTensor::kK : KvTensor::kV;
        r.layer = t.Int(i, "layer");
        r.head = t.Int(i, "kv_head");
        r.max_abs = t.Number(i, "max_abs");
        r.sse = t.Number(i, "sse");
        p.quant.push_back(std::move(r));
      }
    }
  }
  for (int s : {1, 3}) {
    const CsvTable t = ReadPublishedCsv(dir / fmt::format("attn_c4_s{}.csv", s), false);
    for (size_t i = 0; i < t.rows.size(); ++i) {
      PublishedAttnRow r;
      r.corpus = "c4";
      r.strategy = s;
      r.layer = t.Int(i, "layer");
      r.head = t.Text(i, "head") == "all" ? -1 : t.Int(i, "head");
      r.nmse = t.Number(i, "nmse");
      r.cos = t.Number(i, "cos_sim");
      p.attn.push_back(std::move(r));
    }
  }
  return p;
}

bool IsReferenceModelName(const std::string& model, const std::string& dir) {
  std::string name = model;
  if (const size_t at = name.find('@'); at != std::string::npos) name.resize(at);
  while (!name.empty() && name.back() == '/') name.pop_back();
  if (const size_t slash = name.rfind('/'); slash != std::string::npos)
    name = name.substr(slash + 1);
  if (Lower(name) == "qwen2.5-0.5b") return true;
  return Lower(dir).find("models--qwen--qwen2.5-0.5b/") != std::string::npos;
}

Reproduction CompareWithPublished(const PublishedResults& published, const std::string& corpus,
                                  const std::vector<QuantRow>& quant,
                                  const std::vector<AttnRow>& attn,
                                  const std::vector<BytesRow>& bytes, const KvGeometry& geometry) {
  Reproduction r;
  r.corpus = corpus;
  r.claims.push_back(KvRatioClaim(published, corpus, quant));
  r.claims.push_back(OutlierClaim(published, corpus, quant));
  r.claims.push_back(SpotCosClaim(published, corpus, attn));
  r.claims.push_back(FloorClaim(published, corpus, attn, geometry.num_layers));
  r.claims.push_back(WorstLayerClaim(published, corpus, attn));
  r.claims.push_back(BytesClaim(bytes, geometry));
  r.claims.push_back(CastClaim(quant));
  r.agreements = Agreements(published, corpus, quant, attn);
  return r;
}

std::vector<Reproduction> ReproduceRun(const fs::path& run_dir, const PublishedResults& published,
                                       std::vector<std::string>* skipped) {
  const fs::path run_json = run_dir / kRunJson;
  std::vector<Reproduction> out;
  auto skip = [&](const std::string& why) {
    if (skipped) skipped->push_back(why);
  };
  try {
    const json run = json::parse(ReadTextFile(run_json));
    const json& settings = run.at("settings");
    const int64_t tokens = settings.at("tokens").get<int64_t>();
    const int64_t chunk_len = settings.at("chunk_len").get<int64_t>();
    for (const json& model : run.at("models")) {
      const std::string name = model.at("model").get<std::string>();
      const json& g = model.at("geometry");
      const KvGeometry geometry{g.at("num_layers").get<int>(), g.at("num_kv_heads").get<int>(),
                                g.at("head_dim").get<int>()};
      const bool shape = geometry.num_layers == kReferenceLayers &&
                         g.at("num_heads").get<int>() == kReferenceHeads &&
                         geometry.num_kv_heads == kReferenceKvHeads &&
                         geometry.head_dim == kReferenceHeadDim;
      if (!shape || !IsReferenceModelName(name, model.value("dir", ""))) {
        skip(
            fmt::format("{}: not Qwen2.5-0.5B ({} layers, {} query heads, {} KV heads, head_dim "
                        "{}; by geometry and name)",
                        name, geometry.num_layers, g.at("num_heads").get<int>(),
                        geometry.num_kv_heads, geometry.head_dim));
        continue;
      }
      const std::string folder = model.at("folder").get<std::string>();
      std::vector<BytesRow> bytes;
      bool bytes_read = false;
      for (const json& corpus : model.at("corpora")) {
        const std::string cname = corpus.at("corpus").get<std::string>();
        if (cname != "c4" && cname != "wikitext") {
          skip(fmt::format("{} / {}: the study published wikitext and C4 only", name, cname));
          continue;
        }
        if (chunk_len != kReferenceChunkLen || corpus.value("tokens", tokens) != kReferenceTokens) {
          skip(
              fmt::format("{} / {}: {} tokens in prompts of {}, not the reference protocol's "
                          "8 x 512",
                          name, cname, corpus.value("tokens", tokens), chunk_len));
          continue;
        }
        if (!bytes_read) {
          bytes = ReadBytesCsv(run_dir / folder / kBytesCsv);
          bytes_read = true;
        }
        const fs::path dir = run_dir / corpus.at("folder").get<std::string>();
        std::vector<AttnRow> attn;
        if (fs::exists(dir / kAttnCsv)) attn = ReadAttnCsv(dir / kAttnCsv);
        Reproduction r = CompareWithPublished(published, cname, ReadQuantCsv(dir / kQuantCsv), attn,
                                              bytes, geometry);
        r.model = name;
        r.folder = corpus.at("folder").get<std::string>();
        out.push_back(std::move(r));
      }
    }
  } catch (const json::exception& e) {
    ThrowInput("{}: missing or malformed field: {}", run_json.string(), e.what());
  }
  return out;
}

std::string CorrelationText(double r) {
  return std::isnan(r) ? std::string("nan") : fmt::format("{:.5f}", r);
}

std::string VerdictText(const std::vector<Reproduction>& reproductions) {
  std::string out;
  for (const Reproduction& r : reproductions) {
    out += fmt::format("== {} / {}: {} ==\n", r.model, r.corpus,
                       r.AllReproduced() ? "every claim reproduced" : "NOT every claim reproduced");
    for (const Claim& c : r.claims) {
      out += fmt::format("[{}] {}\n", VerdictName(c.verdict), c.claim);
      out += fmt::format("    published: {}\n    this run:  {}\n    tolerance: {}\n", c.published,
                         c.measured, c.tolerance);
      if (!c.detail.empty()) out += fmt::format("    {}\n", c.detail);
    }
    out += fmt::format("-- row by row against the published tables --\n");
    out +=
        fmt::format("{:<20} {:<7} {:>5} {:>8} {:>8} {:>8} {:>6}  {:<14} {}\n", "quantity", "strat",
                    "rows", "r(log)", "median", "worst", "tol", "worst row", "agreement");
    for (const Agreement& a : r.agreements) {
      std::string note;
      if (a.rows_missing) note += fmt::format(" ({} rows missing in the run)", a.rows_missing);
      if (a.rows_nonpositive) note += fmt::format(" ({} rows <= 0 left out)", a.rows_nonpositive);
      out += fmt::format("{:<20} {:<7} {:>5} {:>8} {:>8} {:>8} {:>6}  {:<14} {}{}\n", a.quantity,
                         a.strategy, a.published.size(), CorrelationText(a.correlation),
                         G(a.median_ratio), G(a.worst_ratio), G(a.tolerance), a.worst_label,
                         a.within ? "within" : "OUTSIDE", note);
    }
  }
  return out;
}

std::string ReproductionFigure(const Reproduction& r, const std::string& context) {
  svg::LineFigure figure;
  figure.title = "kvq against the published tables (" + r.corpus + ")";
  figure.subtitle = context + "  \u00b7  one point per row; dashed: y = x";
  figure.panel_height = 240;
  for (const Agreement& a : r.agreements) {
    if (a.published.empty()) continue;
    svg::Panel panel;
    panel.title = fmt::format("{} {} (r = {}, worst ratio {} at {})", a.quantity, a.strategy,
                              CorrelationText(a.correlation), G(a.worst_ratio), a.worst_label);
    panel.x_label = "published (" + a.published_file + ")";
    panel.y_label = "kvq";
    panel.x_log = panel.y_log = true;
    std::map<std::string, svg::Series> groups;
    std::vector<std::string> order;
    double lo = a.published[0], hi = a.published[0];
    for (size_t i = 0; i < a.published.size(); ++i) {
      const std::string& label = a.labels[i];
      std::string group;
      if (label.starts_with("K ")) {
        group = "K heads";
      } else if (label.starts_with("V ")) {
        group = "V heads";
      } else {
        group = label.ends_with(" all") ? "layers" : "query heads";
      }
      if (!groups.count(group)) {
        order.push_back(group);
        groups[group].name = group;
        groups[group].kind = svg::SeriesKind::kPoints;
      }
      svg::Series& s = groups[group];
      s.x.push_back(a.published[i]);
      s.y.push_back(a.measured[i]);
      s.tips.push_back(fmt::format("{}: published {}, kvq {} (x{})", label, G(a.published[i], 6),
                                   G(a.measured[i], 6), G(a.measured[i] / a.published[i], 4)));
      lo = std::min({lo, a.published[i], a.measured[i]});
      hi = std::max({hi, a.published[i], a.measured[i]});
    }
    for (const std::string& g : order) panel.series.push_back(std::move(groups[g]));
    svg::Series diagonal;
    diagonal.name = "y = x";
    diagonal.x = {lo, hi};
    diagonal.y = {lo, hi};
    diagonal.colour = "#7f7f7f";
    panel.series.push_back(std::move(diagonal));
    figure.panels.push_back(std::move(panel));
  }
  return svg::RenderLines(figure);
}

}  // namespace kvq::report
