// `kvq plan`: choose a format per (tensor, layer, kv head) under a
// bytes/token budget, from per-unit attention measurements on a KV dump;
// write the plan file, the per-unit table and the budget frontier.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include <fmt/format.h>

#include "command.h"
#include "kvq/capture/dump.h"
#include "kvq/common/error.h"
#include "kvq/common/io.h"
#include "kvq/plan/planner.h"
#include "paths.h"
#include "progress.h"

namespace kvq::cli {
namespace {

struct Options {
  std::string kv;
  double budget = 0;
  double budget_ratio = 0;
  std::string formats, k_formats, v_formats;
  std::string objective = "worst-cos";
  std::string out;
  std::string pareto;
  int pareto_points = 16;
  std::string csv;
};

std::vector<FormatSpec> FormatsFlag(const char* flag, const std::string& text,
                                    const std::vector<FormatSpec>& fallback) {
  if (text.empty()) return fallback;
  try {
    return ParseFormatList(text);
  } catch (const InputError& e) {
    ThrowInput("{}: {}", flag, e.what());
  }
}

void PrintPlan(const PlanResult& r) {
  const UnitTable& t = r.table;
  const KvGeometry& g = t.geometry;
  const size_t per_layer = 2 * static_cast<size_t>(g.num_kv_heads);
  size_t width = 6;
  for (size_t u = 0; u < t.units.size(); ++u) {
    width = std::max(width, t.Format(u, r.plan.choice[u]).Name().size());
  }
  std::string header = fmt::format("{:>5}", "layer");
  for (const char* tensor : {"k", "v"}) {
    for (int h = 0; h < g.num_kv_heads; ++h) {
      header += fmt::format("  {:<{}}", fmt::format("{}{}", tensor, h), width);
    }
  }
  header += fmt::format("  {:>9}  {:>9}  {:>10}  {:>10}", "pred cos", "meas cos", "pred nmse",
                        "meas nmse");
  std::printf("%s\n", header.c_str());
  for (int l = 0; l < g.num_layers; ++l) {
    std::string line = fmt::format("{:>5}", l);
    for (size_t u = static_cast<size_t>(l) * per_layer;
         u < (static_cast<size_t>(l) + 1) * per_layer; ++u) {
      line += fmt::format("  {:<{}}", t.Format(u, r.plan.choice[u]).Name(), width);
    }
    const auto li = static_cast<size_t>(l);
    line += fmt::format("  {:>9.6f}", r.plan.layer_cos[li]);
    line += r.measured.layers.empty() ? fmt::format("  {:>9}", "-")
                                      : fmt::format("  {:>9.6f}", r.measured.layers[li].all.cos());
    line += fmt::format("  {:>10.3e}", r.plan.layer_nmse[li]);
    line += r.measured.layers.empty()
                ? fmt::format("  {:>10}", "-")
                : fmt::format("  {:>10.3e}", r.measured.layers[li].all.nmse());
    std::printf("%s\n", line.c_str());
  }
  std::string fp16;
  for (size_t u : Fp16Units(t, r.plan)) {
    const UnitMeasure& unit = t.units[u];
    fp16 += fmt::format(" {}[{}.{}]", KvTensorName(unit.tensor), unit.layer, unit.head);
  }
  const double fp16_bytes = 4.0 * g.num_layers * g.num_kv_heads * g.head_dim;
  std::printf(
      "%s\n",
      fmt::format("\nfp16 units (outlier heads):{}", fp16.empty() ? " none" : fp16).c_str());
  std::printf("%s\n", fmt::format("plan: {:.2f} bytes/token ({:.1f}% of fp16), budget {:.2f}",
                                  r.plan.bytes_per_token, 100 * r.plan.bytes_per_token / fp16_bytes,
                                  r.plan.budget)
                          .c_str());
  std::printf("%s\n",
              fmt::format("predicted: worst cos {:.6f} (layer {}), mean cos {:.6f}, mean "
                          "nmse {:.3e}",
                          r.plan.worst_cos, r.plan.worst_layer, r.plan.mean_cos, r.plan.mean_nmse)
                  .c_str());
  if (!r.measured.layers.empty()) {
    std::printf("%s\n", fmt::format("measured:  worst cos {:.6f} (layer {}), mean cos {:.6f}, mean "
                                    "nmse {:.3e}",
                                    r.measured.worst_cos, r.measured.worst_layer,
                                    r.measured.mean_cos, r.measured.mean_nmse)
                            .c_str());
  }
}

void Run(const Options& o) {
  CheckOutputs({{"--out", o.out}, {"--pareto", o.pareto}, {"--csv", o.csv}}, {{"--kv", o.kv}});
  PlannerOptions options;
  // Empty: the dump's default candidates (DefaultPlanFormats), set below.
  options.k_formats =
      FormatsFlag("--k-formats", o.k_formats, FormatsFlag("--formats", o.formats, {}));
  options.v_formats =
      FormatsFlag("--v-formats", o.v_formats, FormatsFlag("--formats", o.formats, {}));
  try {
    options.objective = ParsePlanObjective(o.objective);
  } catch (const InputError& e) {
    ThrowInput("--objective: {}", e.what());
  }
  options.budget = o.budget;
  options.budget_ratio = o.budget_ratio;
  options.pareto_points = o.pareto.empty() ? 0 : o.pareto_points;
  if (!o.pareto.empty() && o.pareto_points < 2) {
    ThrowInput("--pareto-points: {} is too few (at least 2)", o.pareto_points);
  }
  const KvDump dump = KvDump::Open(o.kv);
  const DumpInfo& info = dump.info();
  const KvGeometry g{info.num_layers, info.num_kv_heads, info.head_dim};
  if (options.k_formats.empty()) options.k_formats = DefaultPlanFormats(KvTensor::kK, info);
  if (options.v_formats.empty()) options.v_formats = DefaultPlanFormats(KvTensor::kV, info);
  // The default candidates are a menu: those that do not fit head_dim are
  // left out (as kvq run does); formats the user named must all fit.
  const auto fitting = [&](std::vector<FormatSpec>& formats) {
    std::erase_if(formats, [&](const FormatSpec& f) {
      try {
        f.CheckHeadDim(g.head_dim);
        return false;
      } catch (const InputError&) {
        return true;
      }
    });
  };
  if (o.k_formats.empty() && o.formats.empty()) fitting(options.k_formats);
  if (o.v_formats.empty() && o.formats.empty()) fitting(options.v_formats);
  try {
    ValidatePlanFormats(options.k_formats, options.v_formats, g);
  } catch (const InputError& e) {
    ThrowInput("--formats: {}", e.what());
  }
  const double budget = ResolveBudget(options, g);
  const double minimum = MinPlanBytes(options.k_formats, options.v_formats, g, info.chunk_len);
  if (budget < minimum * (1 - 1e-12)) {
    ThrowInput(
        "{}: {:.2f} bytes/token is below the cheapest plan with these formats, {:.2f} bytes/token "
        "(ratio {:.4f} of fp16)",
        o.budget != 0 ? "--budget" : "--budget-ratio", budget, minimum,
        minimum / (4.0 * g.num_layers * g.num_kv_heads * g.head_dim));
  }
  // Outputs are opened before the work: a bad path fails at once, and
  // nothing appears unless the run completes.
  std::optional<AtomicFile> out, pareto, csv;
  for (auto [flag, path, file] : {std::tuple{"--out", &o.out, &out},
                                  {"--pareto", &o.pareto, &pareto},
                                  {"--csv", &o.csv, &csv}}) {
    if (path->empty()) continue;
    try {
      file->emplace(*path);
    } catch (const RuntimeError& e) {
      // An unwritable output is a runtime failure (exit 1) in every command.
      ThrowRuntime("{}: {}", flag, e.what());
    }
  }
  std::printf("%s\n", fmt::format("kvq plan: {} ({} layers x {} kv heads x head_dim {}, {} tokens "
                                  "in prompts of {})",
                                  o.kv, g.num_layers, g.num_kv_heads, g.head_dim, info.tokens,
                                  info.chunk_len)
                          .c_str());
  std::printf(
      "%s\n",
      fmt::format("candidates: {} for k, {} for v; objective {}; budget {:.2f} "
                  "bytes/token (cheapest plan {:.2f}){}",
                  options.k_formats.size(), options.v_formats.size(), o.objective, budget, minimum,
                  options.pareto_points > 0
                      ? fmt::format("; frontier at {} budgets", options.pareto_points)
                      : "")
          .c_str());
  std::fflush(stdout);

  std::unique_ptr<Progress> bar;
  std::string stage;
  const PlanProgress progress = [&](std::string_view s, int done, int total) {
    if (s != stage) {
      bar = std::make_unique<Progress>(std::string(s), total, "layers");
      stage = std::string(s);
    }
    bar->Update(done);
    if (done == total) bar->Finish();
  };
  const PlanResult r = MakePlan(dump, options, progress);
  bar.reset();
  std::printf("\n");
  PrintPlan(r);

  if (out) {
    out->Write(PlanFileJson(r.table, r.plan, &r.measured));
    out->Commit();
    std::printf("wrote %s (use --strategy plan:%s)\n", o.out.c_str(), o.out.c_str());
  }
  if (pareto) {
    pareto->Write(PlanFrontierCsv(r.pareto));
    pareto->Commit();
    std::printf("wrote %s (%zu rows)\n", o.pareto.c_str(), r.pareto.size());
  }
  if (csv) {
    csv->Write(UnitCsv(r.table, &r.plan));
    csv->Commit();
    std::printf("wrote %s\n", o.csv.c_str());
  }
}

Runner Setup(CLI::App& app) {
  auto o = std::make_shared<Options>();
  app.add_option("--kv", o->kv, "KV dump (safetensors from kvq capture)")->required();
  auto* budget = app.add_option("--budget", o->budget, "Bytes per token of the whole cache");
  auto* ratio =
      app.add_option("--budget-ratio", o->budget_ratio, "Budget as a fraction of the fp16 cache");
  budget->excludes(ratio);
  ratio->excludes(budget);
  app.add_option("--formats", o->formats,
                 "Candidate formats for K and V, comma separated (default, per tensor: fp16, "
                 "int8, fp8, ggml blocks, 2-4 bit groups, K's +had/+prerope/+bias, "
                 "int2:channel; docs/planner.md lists them)");
  app.add_option("--k-formats", o->k_formats, "Candidates for K only (overrides --formats)");
  app.add_option("--v-formats", o->v_formats, "Candidates for V only (overrides --formats)");
  app.add_option("--objective", o->objective, "worst-cos (max-min layer cosine) or mean-nmse")
      ->capture_default_str();
  app.add_option("--out", o->out, "Write the plan file (loadable as --strategy plan:FILE)");
  app.add_option("--pareto", o->pareto,
                 "Write the frontier CSV: plans over a range of budgets, measured, and baselines");
  app.add_option("--pareto-points", o->pareto_points, "Budgets on the frontier")
      ->capture_default_str();
  app.add_option("--csv", o->csv, "Write the per-(unit, format) measurements");
  return [o, budget, ratio] {
    if (budget->count() == 0 && ratio->count() == 0) {
      ThrowInput("give --budget BYTES_PER_TOKEN or --budget-ratio FRACTION");
    }
    if (budget->count() > 0 && !(o->budget > 0 && std::isfinite(o->budget))) {
      ThrowInput("--budget: {} is not a positive number of bytes/token", o->budget);
    }
    if (ratio->count() > 0 && !(o->budget_ratio > 0 && std::isfinite(o->budget_ratio))) {
      ThrowInput("--budget-ratio: {} is not a positive fraction of the fp16 cache",
                 o->budget_ratio);
    }
    Run(*o);
  };
}

KVQ_COMMAND("plan", "Mixed-precision plan: a format per K/V head under a bytes/token budget",
            Setup);

}  // namespace
}  // namespace kvq::cli
