// `kvq quant`: quantize every K/V head of a dump under one or more strategies
// and report the tensor error per (strategy, tensor, layer, head).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>

#include <fmt/format.h>

#include "command.h"
#include "kvq/capture/dump.h"
#include "kvq/common/csv.h"
#include "kvq/common/io.h"
#include "kvq/metrics/tensor_error.h"
#include "kvq/quant/strategy.h"
#include "paths.h"

namespace kvq::cli {
namespace {

struct Options {
  std::string kv;
  std::string strategies;
  std::string csv, json, seed_csv;
  bool no_table = false;
};

// The reference system's headerless rows: file, layer, k|v, tokens, kv_head,
// head_dim, strategy number, max|x|, SSE, MSE (= SSE / (tokens * head_dim)).
std::string SeedCsv(const std::vector<ErrorRow>& rows, const Strategy& s) {
  const std::string number = s.preset_number > 0 ? std::to_string(s.preset_number) : s.name;
  std::string out;
  for (const auto& r : rows) {
    const char* t = KvTensorName(r.tensor);
    out += fmt::format("layer_{:02d}.{}.bin,{},{},{},{},{},{},{:.6f},{:.6f},{:.6f}\n", r.layer, t,
                       r.layer, t, r.tokens, r.head, r.head_dim, CsvField(number), r.error.max_abs,
                       r.error.sse, r.error.mse());
  }
  return out;
}

void PrintSummary(const std::vector<ErrorRow>& rows, const Strategy& s, const DumpInfo& info) {
  const ByteCost cost = s.Cost({info.num_layers, info.num_kv_heads, info.head_dim}, info.chunk_len);
  double nmse[2] = {0, 0};
  int count[2] = {0, 0};
  double k_sse = 0;
  std::vector<const ErrorRow*> k_rows;
  for (const auto& r : rows) {
    const int t = static_cast<int>(r.tensor);
    nmse[t] += r.error.nmse();
    ++count[t];
    if (r.tensor == KvTensor::kK) {
      k_sse += r.error.sse;
      k_rows.push_back(&r);
    }
  }
  const double k = count[0] ? nmse[0] / count[0] : 0, v = count[1] ? nmse[1] / count[1] : 0;
  std::sort(k_rows.begin(), k_rows.end(),
            [](const ErrorRow* a, const ErrorRow* b) { return a->error.sse > b->error.sse; });
  // The smallest set of K heads carrying 80% of the K SSE (largest first).
  std::string top;
  double covered = 0;
  size_t taken = 0;
  while (taken < k_rows.size() && k_sse > 0 && covered < 0.8 * k_sse) {
    covered += k_rows[taken]->error.sse;
    if (taken < 8) top += fmt::format(" ({},{})", k_rows[taken]->layer, k_rows[taken]->head);
    ++taken;
  }
  if (taken > 8) top += fmt::format(" +{} more", taken - 8);
  top = fmt::format("{}/{} heads{}", taken, k_rows.size(), top);
  std::printf("%s\n", fmt::format("summary {}: {:.1f} bytes/token (+{:.0f} B per sequence), mean "
                                  "NMSE K {:.3e} V {:.3e} (K/V {}), 80% of K error in {}",
                                  s.name, cost.per_token, cost.per_sequence, k, v,
                                  v > 0 ? fmt::format("{:.1f}", k / v) : std::string("-"), top)
                          .c_str());
}

void PrintTable(const std::vector<ErrorRow>& rows) {
  std::printf("%-10s %2s %5s %4s %-18s %10s %11s %11s %8s %8s\n", "strategy", "t", "layer", "head",
              "format", "max|x|", "mse", "nmse", "sqnr_db", "B/token");
  for (const auto& r : rows) {
    std::string name = r.strategy.size() > 10 ? r.strategy.substr(0, 9) + "~" : r.strategy;
    std::printf("%s\n", fmt::format("{:<10} {:>2} {:>5} {:>4} {:<18} {:>10.4g} {:>11.4e} {:>11.4e} "
                                    "{:>8.2f} {:>8.1f}",
                                    name, KvTensorName(r.tensor), r.layer, r.head, r.format,
                                    r.error.max_abs, r.error.mse(), r.error.nmse(),
                                    r.error.sqnr_db(), r.bytes_per_token)
                            .c_str());
  }
}

Runner Setup(CLI::App& app) {
  auto o = std::make_shared<Options>();
  app.add_option("--kv", o->kv, "KV dump (from kvq capture)")->required();
  app.add_option("--strategy", o->strategies,
                 "Strategies: presets fp16, strat1..3 (1..3), specs like "
                 "k=int8:channel,v=int4:g32:token, plan:FILE.json; separated by ',' or ';' "
                 "(see docs/strategies.md)")
      ->required();
  app.add_option("--csv", o->csv, "Write the rows as CSV");
  app.add_option("--json", o->json, "Write the rows as JSON");
  app.add_option("--seed-csv", o->seed_csv, "Write the reference system's headerless CSV columns");
  app.add_flag("--no-table", o->no_table, "Print only the summary lines");
  return [o] {
    std::vector<PathArg> inputs = PlanInputs("--strategy", o->strategies);
    inputs.push_back({"--kv", o->kv});
    CheckOutputs({{"--csv", o->csv}, {"--json", o->json}, {"--seed-csv", o->seed_csv}}, inputs);
    const auto strategies = ParseStrategyList(o->strategies);
    const KvDump dump = KvDump::Open(o->kv);
    const DumpInfo& info = dump.info();
    for (const auto& s : strategies)
      s.Validate({info.num_layers, info.num_kv_heads, info.head_dim});
    std::vector<ErrorRow> all;
    std::string seed;
    for (const auto& s : strategies) {
      auto rows = MeasureDump(dump, s);
      if (!o->no_table) PrintTable(rows);
      PrintSummary(rows, s, info);
      seed += SeedCsv(rows, s);
      all.insert(all.end(), rows.begin(), rows.end());
    }
    if (!o->csv.empty()) WriteTextFileAtomic(o->csv, ErrorCsv(all));
    if (!o->json.empty()) WriteTextFileAtomic(o->json, ErrorJson(all, o->kv));
    if (!o->seed_csv.empty()) WriteTextFileAtomic(o->seed_csv, seed);
  };
}

KVQ_COMMAND("quant", "Quantize a KV dump's K/V under strategies and measure the tensor error",
            Setup);

}  // namespace
}  // namespace kvq::cli
