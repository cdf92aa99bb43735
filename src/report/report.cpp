#include "kvq/report/report.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <map>
#include <optional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "kvq/common/error.h"
#include "kvq/common/io.h"
#include "kvq/common/json.h"
#include "kvq/generate/needle.h"
#include "kvq/report/frontier.h"
#include "kvq/report/reproduce.h"
#include "kvq/report/results.h"
#include "kvq/report/svg.h"

namespace kvq::report {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using svg::Escape;

constexpr const char* kCss = R"(
body { font-family: "DejaVu Sans", Arial, Helvetica, sans-serif; color: #222; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { border-bottom: 2px solid #0072b2; padding-bottom: 0.2em; margin-top: 2em; }
h3 { margin-top: 1.6em; color: #0072b2; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f0f4f8; }
td.name, th.name { text-align: left; font-family: "DejaVu Sans Mono", monospace; }
tr.below td { background: #fdecea; }
td.text { text-align: left; white-space: pre-wrap; font-family: "DejaVu Sans Mono", monospace;
          max-width: 46em; }
td.text mark { background: #ffd8a8; }
ul.findings li { margin: 0.3em 0; }
figure { margin: 1.2em 0; page-break-inside: avoid; }
figure svg { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; }
.note { color: #666; font-size: 0.9em; }
@media print { body { max-width: none; } h2 { page-break-before: always; } }
)";

std::string Fmt(double v, int digits = 4) { return svg::FormatValue(v, digits); }

std::string Cell(const std::string& text, bool name = false) {
  return fmt::format("<td{}>{}</td>", name ? R"( class="name")" : "", Escape(text));
}

// A figure: written beside its data, embedded inline, linked by its path.
struct FigureWriter {
  fs::path run_dir;
  std::vector<fs::path> written;

  std::string Add(const std::string& relative, const std::string& svg_text,
                  const std::string& caption) {
    const fs::path path = run_dir / relative;
    WriteTextFileAtomic(path, svg_text);
    written.push_back(path);
    return fmt::format("<figure>\n{}<figcaption>{} <a href=\"{}\">{}</a></figcaption>\n</figure>\n",
                       svg_text, Escape(caption), Escape(relative), Escape(relative));
  }
};

// The bytes a and b share at the start, backed off to a UTF-8 character
// boundary of b.
size_t CommonPrefix(std::string_view a, std::string_view b) {
  size_t n = 0;
  while (n < a.size() && n < b.size() && a[n] == b[n]) ++n;
  while (n > 0 && n < b.size() && (static_cast<unsigned char>(b[n]) & 0xC0) == 0x80) --n;
  return n;
}

// generate.json (kvq generate's JSON) as a table: each strategy's text
// beside the fp16 cache's, the part after the first differing character
// marked.
std::string GeneratedTextTable(const fs::path& file) {
  json j;
  try {
    j = ParseJson<json>(ReadTextFile(file), file.string());
    const json& base = j.at("baseline");
    const std::string base_text =
        base.at("text").is_null() ? "" : base.at("text").get<std::string>();
    std::string out = fmt::format(
        "<p class=\"note\">Greedy decoding after the corpus's first {} tokens: each strategy's own "
        "continuation against the fp16 cache's (the first row); marked: the text from the first "
        "character that differs. KL: the mean per-step KL from the fp16-cache run, "
        "teacher-forced on its tokens (docs/generate.md).</p>\n",
        j.at("prompt_tokens").get<int64_t>());
    out +=
        "<table>\n<tr><th class=\"name\">strategy</th><th>tokens</th><th>stop</th>"
        "<th>first divergence</th><th>match</th><th>KL mean</th><th class=\"name\">generated "
        "text</th></tr>\n";
    std::vector<const json*> rows = {&base};
    for (const json& r : j.at("strategies")) rows.push_back(&r);
    for (const json* r : rows) {
      const std::string text = r->at("text").is_null() ? "" : r->at("text").get<std::string>();
      const size_t common = r == &base ? text.size() : CommonPrefix(base_text, text);
      std::string shown = Escape(text.substr(0, common));
      if (common < text.size()) shown += "<mark>" + Escape(text.substr(common)) + "</mark>";
      const json& first = r->at("first_divergence");
      out += "<tr>" + Cell(r->at("strategy").get<std::string>(), true) +
             Cell(std::to_string(r->at("tokens").size())) +
             Cell(r->value("stop_reason", std::string("length"))) +
             Cell(first.is_null() ? "-" : std::to_string(first.get<int64_t>())) +
             Cell(fmt::format("{:.3f}", r->at("match_fraction").get<double>())) +
             Cell(r == &base ? "-" : Fmt(r->at("kl_mean").get<double>())) + "<td class=\"text\">" +
             shown + "</td></tr>\n";
    }
    return out + "</table>\n";
  } catch (const json::exception& e) {
    ThrowInput("{}: not a kvq generate result: {}", file.string(), JsonErrorText(e));
  }
}

std::string Slug(const std::string& text) {
  std::string out;
  for (char c : text) {
    const bool keep = std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.';
    if (keep) {
      out += c;
    } else if (out.empty() || out.back() != '_') {
      out += '_';
    }
    if (out.size() >= 40) break;
  }
  return out;
}

struct CorpusResults {
  std::string corpus, folder;
  std::vector<QuantRow> quant;
  std::vector<AttnRow> attn;
  std::vector<AttnSummary> summaries;
  std::vector<ParetoPoint> pareto;
  bool has_ppl = false;
  PplData ppl;
  json meta;
};

// The strategy whose K/V ratio and outlier heads head the findings: the
// first one that quantizes both tensors.
std::string ReferenceStrategy(const std::vector<QuantRow>& quant) {
  for (const std::string& s : StrategiesOf(quant)) {
    if (MeanNmse(quant, s, KvTensor::kK) > 0 && MeanNmse(quant, s, KvTensor::kV) > 0) return s;
  }
  return {};
}

std::string HeadList(const std::vector<HeadShare>& heads, size_t max = 8) {
  std::string out;
  for (size_t i = 0; i < heads.size() && i < max; ++i) {
    out += fmt::format("{}(L{}, h{}) {:.0f}%", i ? ", " : "", heads[i].layer, heads[i].head,
                       100 * heads[i].share);
  }
  if (heads.size() > max) out += fmt::format(", +{} more", heads.size() - max);
  return out;
}

double Fp16Bytes(const json& geometry) {
  return 2.0 * 2 * geometry.at("num_layers").get<double>() *
         geometry.at("num_kv_heads").get<double>() * geometry.at("head_dim").get<double>();
}

std::string Findings(const CorpusResults& c, const json& model, const std::vector<BytesRow>& bytes,
                     double floor) {
  std::string out = "<ul class=\"findings\">\n";
  const std::string ref = ReferenceStrategy(c.quant);
  if (!ref.empty()) {
    const double k = MeanNmse(c.quant, ref, KvTensor::kK), v = MeanNmse(c.quant, ref, KvTensor::kV);
    out += fmt::format(
        "<li><b>K vs V:</b> under <code>{}</code> the keys' mean NMSE is {} and the values' {}: "
        "K is <b>{:.1f}&times;</b> harder to quantize than V.</li>\n",
        Escape(ref), Fmt(k), Fmt(v), k / v);
    const auto heads = DominantKHeads(c.quant, ref);
    const int total = model.at("geometry").at("num_layers").get<int>() *
                      model.at("geometry").at("num_kv_heads").get<int>();
    out += fmt::format(
        "<li><b>Outlier heads:</b> under <code>{}</code>, {} of {} K heads carry 80% of the K "
        "error: {}.</li>\n",
        Escape(ref), heads.size(), total, Escape(HeadList(heads)));
  }
  const json& plan = c.meta.contains("plan") ? c.meta.at("plan") : json::object();
  if (plan.contains("outlier_heads")) {
    std::string heads;
    for (const json& h : plan.at("outlier_heads")) {
      heads += (heads.empty() ? "" : ", ") + h.get<std::string>();
    }
    out += fmt::format(
        "<li><b>Planner</b> ({}, budget {} bytes/token = 35/64 of fp16, strat3's size on "
        "Qwen2.5-0.5B): <code>plan</code> uses {} "
        "bytes/token and keeps {} units in fp16 (the outlier heads): {}.</li>\n",
        Escape(plan.value("objective", "")), Fmt(plan.value("budget_bytes_per_token", 0.0), 8),
        Fmt(plan.value("bytes_per_token", 0.0), 8), plan.at("outlier_heads").size(),
        heads.empty() ? std::string("none") : Escape(heads));
  } else if (plan.contains("status")) {
    out += "<li><b>Planner:</b> " + Escape(plan.value("status", "")) + "</li>\n";
  }
  const double fp16 = Fp16Bytes(model.at("geometry"));
  for (const BudgetPick& b : BestUnderBudgets(c.pareto)) {
    out += fmt::format(
        "<li><b>Best at &le; {} bytes/token</b> ({:.1f}% of fp16): <code>{}</code> (attention NMSE "
        "{}, worst-layer cos {:.4f}).</li>\n",
        Fmt(b.budget, 8), 100 * b.budget / fp16, Escape(b.best.strategy), Fmt(b.best.error),
        b.best.worst_cos);
  }
  for (const AttnSummary& a : c.summaries) {
    if (a.below_floor.empty()) continue;
    std::string layers;
    for (int l : a.below_floor) layers += (layers.empty() ? "" : ", ") + std::to_string(l);
    out += fmt::format(
        "<li><code>{}</code> breaks the quality floor {} in {} of {} layers ({}); worst layer {} "
        "at cos {:.4f}.</li>\n",
        Escape(a.strategy), floor, a.below_floor.size(), a.cos.size(), layers, a.worst_layer,
        a.worst_cos);
  }
  for (const ModifierEffect& e : ModifierEffects(c.quant, c.summaries, bytes)) {
    out += fmt::format(
        "<li><b>+{}</b>: <code>{}</code> vs <code>{}</code> ({} vs {} bytes/token): K NMSE "
        "&times;{}, attention NMSE &times;{}.</li>\n",
        e.modifier, Escape(e.variant), Escape(e.base), Fmt(e.variant_bytes, 8),
        Fmt(e.base_bytes, 8), Fmt(e.k_nmse_ratio, 3), Fmt(e.attn_nmse_ratio, 3));
  }
  return out + "</ul>\n";
}

std::string AttentionTable(const CorpusResults& c, int num_layers) {
  std::vector<int> spot;
  for (int l : {0, 8, 16}) {
    if (l < num_layers) spot.push_back(l);
  }
  std::string out = "<table>\n<tr><th class=\"name\">strategy</th>";
  for (int l : spot) out += fmt::format("<th>cos L{}</th>", l);
  out +=
      "<th>worst layer</th><th>worst cos</th><th>worst NMSE</th><th>mean NMSE</th>"
      "<th>layers below floor</th></tr>\n";
  for (const AttnSummary& a : c.summaries) {
    out += a.below_floor.empty() ? "<tr>" : "<tr class=\"below\">";
    out += Cell(a.strategy, true);
    for (int l : spot) out += Cell(a.cos.count(l) ? fmt::format("{:.4f}", a.cos.at(l)) : "-");
    out += Cell(std::to_string(a.worst_layer)) + Cell(fmt::format("{:.4f}", a.worst_cos)) +
           Cell(Fmt(a.worst_nmse)) + Cell(Fmt(a.mean_nmse)) +
           Cell(std::to_string(a.below_floor.size())) + "</tr>\n";
  }
  return out + "</table>\n";
}

std::string QualityTable(const CorpusResults& c) {
  std::string out =
      "<table>\n<tr><th class=\"name\">strategy</th><th>bytes/token</th><th>mean NMSE K</th>"
      "<th>mean NMSE V</th><th>K/V</th>";
  if (c.has_ppl) out += "<th>ppl</th><th>&Delta;ppl</th><th>KL mean</th><th>top-1 agree</th>";
  out += "</tr>\n";
  if (c.has_ppl) {
    out +=
        "<tr><td class=\"name\">baseline (unquantized)</td><td>-</td><td>-</td><td>-</td>"
        "<td>-</td>" +
        Cell(fmt::format("{:.4f}", c.ppl.baseline_ppl)) + "<td>-</td><td>-</td><td>-</td></tr>\n";
  }
  const std::vector<BytesRow> bytes = BytesFromQuant(c.quant);
  for (const std::string& s : StrategiesOf(c.quant)) {
    const double k = MeanNmse(c.quant, s, KvTensor::kK), v = MeanNmse(c.quant, s, KvTensor::kV);
    double b = 0;
    for (const BytesRow& r : bytes) b = r.strategy == s ? r.bytes_per_token : b;
    out += "<tr>" + Cell(s, true) + Cell(Fmt(b, 8)) + Cell(Fmt(k)) + Cell(Fmt(v)) +
           Cell(v > 0 ? fmt::format("{:.1f}", k / v) : "-");
    if (c.has_ppl) {
      const auto it = std::find_if(c.ppl.rows.begin(), c.ppl.rows.end(),
                                   [&](const PplRow& r) { return r.strategy == s; });
      if (it == c.ppl.rows.end()) {
        out += "<td>-</td><td>-</td><td>-</td><td>-</td>";
      } else {
        out += Cell(fmt::format("{:.4f}{}", it->ppl, it->calibrated ? "*" : "")) +
               Cell(fmt::format("{:+.4f}", it->delta_ppl)) + Cell(Fmt(it->kl_mean)) +
               Cell(fmt::format("{:.4f}", it->top1_agree));
      }
    }
    out += "</tr>\n";
  }
  out += "</table>\n";
  if (c.has_ppl) {
    out +=
        "<p class=\"note\">* sequence-global scales calibrated on the unquantized pass over the "
        "same text.</p>\n";
  }
  return out;
}

std::string BytesTable(const std::vector<BytesRow>& bytes) {
  std::string out =
      "<table>\n<tr><th class=\"name\">strategy</th><th>bytes/token</th><th>% of fp16</th>"
      "<th>per-sequence bytes</th></tr>\n";
  for (const BytesRow& b : bytes) {
    out += "<tr>" + Cell(b.strategy, true) + Cell(Fmt(b.bytes_per_token, 8)) +
           Cell(fmt::format("{:.1f}%", 100 * b.fraction_of_fp16)) + Cell(Fmt(b.per_sequence, 8)) +
           "</tr>\n";
  }
  return out + "</table>\n";
}

std::string SettingsTable(const json& run) {
  const json& s = run.at("settings");
  std::string models;
  for (const json& m : run.at("models")) {
    models += (models.empty() ? "" : ", ") + m.at("model").get<std::string>();
  }
  std::vector<std::pair<std::string, std::string>> rows = {
      {"models", models},
      {"corpora", s.at("corpora").dump()},
      {"tokens per corpus", std::to_string(s.at("tokens").get<int64_t>())},
      {"prompt length (chunk_len)", std::to_string(s.at("chunk_len").get<int64_t>())},
      {"strategies", s.at("strategies").get<std::string>()},
      {"quality floor (layer cos)", Fmt(s.value("floor", kDefaultFloor))},
      {"kvq version", run.value("kvq_version", "")},
      {"created", run.value("created", "")},
  };
  if (run.contains("timings_s"))
    rows.push_back({"total time", Fmt(run.at("timings_s").value("total", 0.0), 3) + " s"});
  std::string out = "<table>\n";
  for (const auto& [k, v] : rows)
    out += "<tr><th class=\"name\">" + Escape(k) + "</th>" + Cell(v, true) + "</tr>\n";
  return out + "</table>\n";
}

std::string ComparisonTable(const json& models,
                            const std::vector<std::vector<CorpusResults>>& results,
                            const std::vector<std::vector<BytesRow>>& bytes) {
  std::string out =
      "<table>\n<tr><th class=\"name\">model</th><th class=\"name\">corpus</th><th>layers &times; "
      "KV heads &times; head_dim</th><th class=\"name\">reference strategy</th><th>K/V NMSE "
      "ratio</th><th class=\"name\">K heads with 80% of K error</th><th class=\"name\">modifier "
      "effects (attention NMSE ratio)</th></tr>\n";
  for (size_t m = 0; m < results.size(); ++m) {
    const json& g = models[m].at("geometry");
    for (const CorpusResults& c : results[m]) {
      const std::string ref = ReferenceStrategy(c.quant);
      const double k = MeanNmse(c.quant, ref, KvTensor::kK);
      const double v = MeanNmse(c.quant, ref, KvTensor::kV);
      const auto heads = DominantKHeads(c.quant, ref);
      std::string effects;
      for (const ModifierEffect& e : ModifierEffects(c.quant, c.summaries, bytes[m])) {
        effects += fmt::format("{}+{} &times;{}", effects.empty() ? "" : "; ", e.modifier,
                               Fmt(e.attn_nmse_ratio, 3));
      }
      out += "<tr>" + Cell(models[m].at("model").get<std::string>(), true) + Cell(c.corpus, true) +
             Cell(fmt::format("{} \u00d7 {} \u00d7 {}", g.at("num_layers").get<int>(),
                              g.at("num_kv_heads").get<int>(), g.at("head_dim").get<int>())) +
             Cell(ref, true) + Cell(v > 0 ? fmt::format("{:.1f}", k / v) : "-") +
             Cell(fmt::format("{}: {}", heads.size(), HeadList(heads, 4)), true) +
             "<td class=\"name\">" + (effects.empty() ? "-" : effects) + "</td></tr>\n";
    }
  }
  return out + "</table>\n";
}

// The moonshot on Qwen2.5-0.5B: worst-layer cosine >= 0.998 at no more than
// half of strat3's 6,720 bytes/token, and >= 0.99 at 2,304.
constexpr double kMoonshotCos = 0.998, kMoonshotBytes = 3456;
constexpr double kMoonshotLooseCos = 0.99, kMoonshotLooseBytes = 2304;

std::string TargetText(const std::optional<FrontierEntry>& e, double fp16,
                       const std::string& what) {
  if (!e) return "none of the evaluated strategies " + what;
  return fmt::format(
      "<b>{} bytes/token</b> ({:.1f} MiB at 32k tokens, {:.1f}% of fp16): <code>{}</code> "
      "(worst-layer cos {:.4f} at layer {}{})",
      Fmt(e->bytes_per_token, 8), CacheMiB(e->bytes_per_token), 100 * e->bytes_per_token / fp16,
      Escape(e->strategy), e->worst_cos, e->worst_layer,
      std::isnan(e->kl_mean) ? std::string() : ", mean KL " + Fmt(e->kl_mean));
}

// Per (model, corpus): the smallest cache keeping each quality target, the
// moonshot's verdict on Qwen2.5-0.5B, every point and the frontier figure.
std::string FrontierSection(const CorpusResults& c, const json& model, const std::string& context,
                            FigureWriter& figures) {
  std::map<std::string, double> predicted;
  std::string infeasible;
  if (c.meta.contains("plans")) {
    for (const json& p : c.meta.at("plans")) {
      const std::string name = p.value("name", "");
      if (p.contains("predicted_worst_cos")) {
        predicted[name] = p.at("predicted_worst_cos").get<double>();
      } else {
        infeasible +=
            "<li><code>" + Escape(name) + "</code>: " + Escape(p.value("status", "")) + "</li>\n";
      }
    }
  }
  const std::vector<FrontierEntry> entries = FrontierEntries(
      BytesFromQuant(c.quant), c.summaries, c.has_ppl ? &c.ppl : nullptr, predicted);
  const json& g = model.at("geometry");
  const double fp16 = Fp16Bytes(g);
  std::string out = fmt::format("<h3>{}</h3>\n<ul class=\"findings\">\n", Escape(context));
  const auto strict = SmallestWithCos(entries, kMoonshotCos);
  const auto loose = SmallestWithCos(entries, kMoonshotLooseCos);
  out +=
      "<li>(a) every layer's attention cosine &ge; 0.998: " + TargetText(strict, fp16, "keeps it") +
      ".</li>\n";
  out +=
      "<li>(b) every layer's attention cosine &ge; 0.99: " + TargetText(loose, fp16, "keeps it") +
      ".</li>\n";
  double q8_kl = std::numeric_limits<double>::quiet_NaN();
  for (const FrontierEntry& e : entries) {
    if (e.strategy == "q8_0") q8_kl = e.kl_mean;
  }
  if (std::isnan(q8_kl)) {
    out +=
        "<li>(c) mean KL &le; q8_0's: not measured (needs the ppl step and q8_0 among the "
        "strategies).</li>\n";
  } else {
    out += fmt::format("<li>(c) mean KL &le; q8_0's ({}): {}.</li>\n", Fmt(q8_kl),
                       TargetText(SmallestWithKl(entries, q8_kl), fp16, "reaches it"));
  }
  out += "</ul>\n";
  const bool reference_model =
      IsReferenceModelName(model.at("model").get<std::string>(), model.value("dir", "")) &&
      g.at("num_layers").get<int>() == kReferenceLayers &&
      g.at("num_heads").get<int>() == kReferenceHeads &&
      g.at("num_kv_heads").get<int>() == kReferenceKvHeads &&
      g.at("head_dim").get<int>() == kReferenceHeadDim;
  if (reference_model) {
    const bool a = strict && strict->bytes_per_token <= kMoonshotBytes;
    const bool b = loose && loose->bytes_per_token <= kMoonshotLooseBytes;
    out += fmt::format(
        "<p><b>Moonshot {}</b> (worst-layer cosine &ge; 0.998 at &le; 3,456 bytes/token, half of "
        "strat3, <b>{}</b>; &ge; 0.99 at &le; 2,304 bytes/token, <b>{}</b>).</p>\n",
        a && b ? "reached" : "not reached", a ? "reached" : "not reached",
        b ? "reached" : "not reached");
  }
  out +=
      "<table>\n<tr><th class=\"name\">strategy</th><th class=\"name\">kind</th><th>bytes/token"
      "</th><th>% of fp16</th><th>MiB at 32k tokens</th><th>worst-layer cos (measured)</th>"
      "<th>at layer</th><th>predicted worst-layer cos</th><th>mean KL</th></tr>\n";
  for (const FrontierEntry& e : entries) {
    out += e.worst_cos >= kMoonshotLooseCos ? "<tr>" : "<tr class=\"below\">";
    out += Cell(e.strategy, true) + Cell(e.plan ? "plan" : "uniform", true) +
           Cell(Fmt(e.bytes_per_token, 8)) +
           Cell(fmt::format("{:.1f}%", 100 * e.bytes_per_token / fp16)) +
           Cell(fmt::format("{:.2f}", CacheMiB(e.bytes_per_token))) +
           Cell(fmt::format("{:.6f}", e.worst_cos)) + Cell(std::to_string(e.worst_layer)) +
           Cell(e.plan ? fmt::format("{:.6f}", e.predicted_worst_cos) : std::string("-")) +
           Cell(std::isnan(e.kl_mean) ? std::string("-") : Fmt(e.kl_mean)) + "</tr>\n";
  }
  out += "</table>\n";
  if (!infeasible.empty()) {
    out += "<p class=\"note\">Budgets of the ladder without a plan:</p>\n<ul>\n" + infeasible +
           "</ul>\n";
  }
  out +=
      figures.Add(c.folder + "/fig_frontier.svg", FrontierFigure(entries, "strat3", q8_kl, context),
                  "Bytes per token against 1 - worst-layer cosine and mean KL (log scales; a "
                  "point at exactly 0 cannot be placed and is in the table only): the "
                  "planner's plans as a line, uniform strategies as points, strat3 (the "
                  "reference study's) marked when evaluated.");
  return out;
}

// "Did kvq reproduce the reference study?": the verdicts of every (model,
// corpus) on the reference protocol (reproduce.h), or why there is none.
std::string ReproductionSection(const fs::path& run_dir, FigureWriter& figures) {
  std::string out = "<h2 id=\"reproduction\">Did kvq reproduce the reference study?</h2>\n";
  PublishedResults published;
  try {
    published = LoadPublished(PublishedDataDir());
  } catch (const InputError& e) {
    return out + "<p>The published tables could not be read: " + Escape(e.what()) + "</p>\n";
  }
  std::vector<std::string> skipped;
  const std::vector<Reproduction> reproductions = ReproduceRun(run_dir, published, &skipped);
  if (reproductions.empty()) {
    out +=
        "<p>Not applicable to this run: the reference study measured Qwen2.5-0.5B on wikitext and "
        "C4 in 8 prompts of 512 tokens (<code>kvq run --model Qwen/Qwen2.5-0.5B</code> with the "
        "default settings).</p>\n<ul>\n";
    for (const std::string& s : skipped) out += "<li>" + Escape(s) + "</li>\n";
    return out + "</ul>\n";
  }
  out +=
      "<p>Each published claim of the reference study (public repository <code>jnros/kvmix</code>; "
      "tables shipped in <code>data/reference/kvmix</code>) against this run, with the tolerance "
      "it is held to. The original ran the model in fp16 on a GPU, kvq runs it in float32 on the "
      "CPU: the figures agree closely, not exactly. <code>kvq reproduce --run DIR</code> prints "
      "the same table.</p>\n";
  for (const Reproduction& r : reproductions) {
    int applicable = 0, reproduced = 0, unpublished = 0;
    for (const Claim& c : r.claims) {
      if (c.verdict == Verdict::kNotPublished) {
        ++unpublished;
        continue;
      }
      ++applicable;
      reproduced += c.verdict == Verdict::kReproduced ? 1 : 0;
    }
    out += fmt::format("<h3>{} &middot; {}: {} of {} claims reproduced{}</h3>\n", Escape(r.model),
                       Escape(r.corpus), reproduced, applicable,
                       unpublished ? fmt::format(" ({} not published for this corpus)", unpublished)
                                   : std::string());
    out +=
        "<table>\n<tr><th class=\"name\">claim</th><th class=\"name\">published</th><th "
        "class=\"name\">this run</th><th class=\"name\">tolerance</th><th "
        "class=\"name\">verdict</th></tr>\n";
    for (const Claim& c : r.claims) {
      const bool bad = c.verdict == Verdict::kDiffers || c.verdict == Verdict::kMissing;
      out += bad ? "<tr class=\"below\">" : "<tr>";
      std::string verdict = std::string("<b>") + VerdictName(c.verdict) + "</b>";
      if (!c.detail.empty()) verdict += ": " + Escape(c.detail);
      out += "<td class=\"name\">" + Escape(c.claim) + "</td>" + Cell(c.published, true) +
             Cell(c.measured, true) + Cell(c.tolerance, true) + "<td class=\"name\">" + verdict +
             "</td></tr>\n";
    }
    out += "</table>\n";
    out +=
        "<p>Row by row against the published tables: per quantity, the correlation of log10 "
        "values, the median and the worst ratio kvq / published (worst: max of the ratio and its "
        "inverse), and the expected tolerance on the worst ratio.</p>\n";
    out +=
        "<table>\n<tr><th class=\"name\">quantity</th><th class=\"name\">strategy</th><th "
        "class=\"name\">published file</th><th>rows</th><th>r (log)</th><th>median "
        "ratio</th><th>worst ratio</th><th class=\"name\">at</th><th>tolerance</th><th "
        "class=\"name\">agreement</th></tr>\n";
    for (const Agreement& a : r.agreements) {
      out += a.within ? "<tr>" : "<tr class=\"below\">";
      std::string rows = std::to_string(a.published.size());
      if (a.rows_missing) rows += fmt::format(" ({} missing)", a.rows_missing);
      out += Cell(a.quantity, true) + Cell(a.strategy, true) + Cell(a.published_file, true) +
             Cell(rows) + Cell(CorrelationText(a.correlation)) + Cell(Fmt(a.median_ratio)) +
             Cell(Fmt(a.worst_ratio)) + Cell(a.worst_label, true) + Cell(Fmt(a.tolerance)) +
             Cell(a.within ? "within" : "outside", true) + "</tr>\n";
    }
    out += "</table>\n";
    out += figures.Add(r.folder + "/fig_reproduce.svg",
                       ReproductionFigure(r, r.model + " \u00b7 " + r.corpus),
                       "kvq's value against the published one, per row of the published tables.");
  }
  return out;
}

// A folder named by run.json, refused unless it is a plain relative path
// that stays inside the run folder (no "..", no absolute path, no link out):
// the run folder's files are inputs like any other.
std::string InsideRun(const fs::path& run_dir, const std::string& folder, const fs::path& run_json,
                      const char* field) {
  const fs::path rel(folder);
  bool plain = !folder.empty() && rel.is_relative() && !rel.has_root_name();
  for (const auto& part : rel) plain = plain && part != ".." && part != ".";
  std::error_code ec;
  const fs::path root = fs::weakly_canonical(fs::absolute(run_dir), ec);
  const fs::path full = fs::weakly_canonical(fs::absolute(run_dir / rel), ec);
  const auto [end, unused] = std::mismatch(root.begin(), root.end(), full.begin(), full.end());
  if (!plain || end != root.end()) {
    ThrowInput("{}: {} '{}' leaves the run folder (it must be a folder inside it)",
               run_json.string(), field, Printable(folder, 80));
  }
  return folder;
}

}  // namespace

ReportFiles BuildReport(const fs::path& run_dir) {
  const fs::path run_json = run_dir / kRunJson;
  json run;
  try {
    run = ParseJson<json>(ReadTextFile(run_json), run_json.string());
    if (run.at("schema").get<std::string>() != "kvq.run.v1") {
      ThrowInput("{}: schema '{}' is not kvq.run.v1", run_json.string(),
                 run.at("schema").get<std::string>());
    }
  } catch (const json::exception& e) {
    ThrowInput("{}: not a kvq run file: {}", run_json.string(), JsonErrorText(e));
  }
  FigureWriter figures{run_dir, {}};
  const json* models_field = nullptr;
  double floor = kDefaultFloor;
  try {
    models_field = &run.at("models");
    if (!models_field->is_array()) ThrowInput("{}: 'models' is not an array", run_json.string());
    floor = run.at("settings").value("floor", kDefaultFloor);
    static_cast<void>(run.at("settings").at("chunk_len").get<int64_t>());
  } catch (const json::exception& e) {
    ThrowInput("{}: missing or malformed field: {}", run_json.string(), JsonErrorText(e));
  }
  const json& models = *models_field;
  std::vector<std::vector<CorpusResults>> all_results;
  std::vector<std::vector<BytesRow>> all_bytes;
  std::string sections, frontier;
  try {
    for (const json& model : models) {
      const std::string name = model.at("model").get<std::string>();
      const std::string folder =
          InsideRun(run_dir, model.at("folder").get<std::string>(), run_json, "models[].folder");
      const json& g = model.at("geometry");
      const int num_layers = g.at("num_layers").get<int>();
      std::vector<BytesRow> bytes = ReadBytesCsv(run_dir / folder / kBytesCsv);
      std::string s = fmt::format("<h2 id=\"{}\">{}</h2>\n", Escape(Slug(folder)), Escape(name));
      s += fmt::format(
          "<p>{}: {} layers, {} query heads, {} KV heads, head_dim {}. Model folder "
          "<code>{}</code>.</p>\n",
          Escape(model.value("architecture", "")), num_layers, g.at("num_heads").get<int>(),
          g.at("num_kv_heads").get<int>(), g.at("head_dim").get<int>(),
          Escape(model.value("dir", "")));
      if (model.contains("skipped_strategies") && !model.at("skipped_strategies").empty()) {
        s += "<p class=\"note\">Default strategies that do not apply to this model: ";
        for (const json& k : model.at("skipped_strategies")) {
          s += "<code>" + Escape(k.at("strategy").get<std::string>()) + "</code> (" +
               Escape(k.at("reason").get<std::string>()) + ") ";
        }
        s += "</p>\n";
      }
      s += "<h3>Bytes per token</h3>\n" + BytesTable(bytes);
      s += figures.Add(folder + "/fig_bytes.svg", BytesFigure(bytes, name),
                       "KV-cache bytes per token per strategy.");
      std::vector<CorpusResults> results;
      for (const json& corpus : model.at("corpora")) {
        CorpusResults c;
        c.corpus = corpus.at("corpus").get<std::string>();
        c.folder = InsideRun(run_dir, corpus.at("folder").get<std::string>(), run_json,
                             "models[].corpora[].folder");
        c.meta = corpus;
        const fs::path dir = run_dir / c.folder;
        c.quant = ReadQuantCsv(dir / kQuantCsv);
        c.attn = ReadAttnCsv(dir / kAttnCsv);
        c.summaries = SummarizeAttention(c.attn, floor);
        c.pareto = ParetoPoints(BytesFromQuant(c.quant), c.summaries);
        c.has_ppl = fs::exists(dir / kPplJson);
        if (c.has_ppl) c.ppl = ReadPplJson(dir / kPplJson);
        const std::string context = name + " \u00b7 " + c.corpus;
        s += fmt::format("<h3>{} &middot; {}</h3>\n", Escape(name), Escape(c.corpus));
        s += fmt::format(
            "<p class=\"note\">{} tokens in prompts of {}; token ids sha256 <code>{}</code>; "
            "capture {}.</p>\n",
            corpus.value("tokens", int64_t{0}), run.at("settings").at("chunk_len").get<int64_t>(),
            Escape(corpus.value("token_ids_sha256", "")),
            corpus.value("capture_cached", false) ? "reused from the cache" : "computed");
        s += "<h4>Findings</h4>\n" + Findings(c, model, bytes, floor);
        s += "<h4>Attention fidelity</h4>\n" + AttentionTable(c, num_layers);
        s += "<h4>Tensor error and end-to-end quality</h4>\n" + QualityTable(c);
        s += figures.Add(c.folder + "/fig_nmse.svg", NmseFigure(c.quant, context),
                         "NMSE by layer, keys and values, one line per strategy (log scale).");
        const auto names = StrategiesOf(c.quant);
        for (size_t i = 0; i < names.size(); ++i) {
          s += figures.Add(
              fmt::format("{}/fig_heatmap_{:02d}_{}.svg", c.folder, i + 1, Slug(names[i])),
              HeatmapFigure(c.quant, names[i], context),
              "NMSE per layer and KV head under " + names[i] + ".");
        }
        s += figures.Add(c.folder + "/fig_cos.svg", CosFigure(c.attn, floor, context),
                         "Attention output cosine by layer; dashed: the quality floor.");
        // Runs made before attn_positions.csv existed have no such file.
        if (fs::exists(dir / kAttnPositionsCsv)) {
          s += figures.Add(c.folder + "/fig_attn_position.svg",
                           PositionFigure(ReadAttnPositionsCsv(dir / kAttnPositionsCsv), context),
                           "Attention NMSE by position in the prompt (all layers; log-log): does "
                           "the damage grow with context?");
        }
        s += figures.Add(c.folder + "/fig_pareto.svg", ParetoFigure(c.pareto, context),
                         "Bytes per token against mean attention NMSE.");
        if (c.has_ppl) {
          s += figures.Add(c.folder + "/fig_ppl.svg", PplFigure(c.ppl, context),
                           "Perplexity change per strategy.");
          s += figures.Add(c.folder + "/fig_kl.svg", KlFigure(c.ppl, context),
                           "Mean next-token KL divergence per strategy (log scale).");
        }
        if (fs::exists(dir / kGenerateJson)) {
          s += "<h4>Generated text</h4>\n" + GeneratedTextTable(dir / kGenerateJson);
        }
        frontier += FrontierSection(c, model, context, figures);
        results.push_back(std::move(c));
      }
      if (fs::exists(run_dir / folder / kNeedleJson)) {
        const fs::path file = run_dir / folder / kNeedleJson;
        const NeedleReport needle = ParseNeedleJson(ReadTextFile(file), file.string());
        s += "<h3>Passkey retrieval</h3>\n";
        s += figures.Add(folder + "/fig_needle.svg", NeedleHeatmapSvg(needle, name),
                         "Passkey retrieval accuracy by context length and depth of the key, one "
                         "panel per strategy (kvq needle; docs/generate.md).");
      }
      sections += s;
      all_results.push_back(std::move(results));
      all_bytes.push_back(std::move(bytes));
    }
  } catch (const json::exception& e) {
    ThrowInput("{}: missing or malformed field: {}", run_json.string(), JsonErrorText(e));
  }

  std::string html =
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
      "<title>kvq report</title>\n<style>" +
      std::string(kCss) +
      "</style>\n</head>\n<body>\n<h1>kvq report: how far can the KV cache be compressed?</h1>\n";
  html += ReproductionSection(run_dir, figures);
  html +=
      "<h2 id=\"frontier\">Compression frontier</h2>\n<p>How small can the cache get before "
      "attention breaks? Per model and corpus, the smallest cache among the evaluated strategies "
      "(the planner's plans at a ladder of budgets and the uniform strategies) that keeps every "
      "layer's attention cosine &ge; 0.998, &ge; 0.99, and a mean KL no worse than q8_0's. "
      "Plans show their measured worst-layer cosine beside the planner's prediction.</p>\n" +
      frontier;
  html += "<h2>Settings</h2>\n" + SettingsTable(run);
  if (models.size() > 1) {
    html += "<h2>Models side by side</h2>\n" + ComparisonTable(models, all_results, all_bytes);
  }
  html += sections;
  html +=
      "<p class=\"note\">NMSE = sum of squared error / sum of squares of the original. Attention "
      "cosine: mean over (query head, token) of the cosine between the attention outputs with "
      "original and quantized K/V. Hover a point or cell for its exact "
      "value.</p>\n</body>\n</html>\n";
  const fs::path html_path = run_dir / kReportHtml;
  WriteTextFileAtomic(html_path, html);
  return {html_path, std::move(figures.written)};
}

}  // namespace kvq::report
