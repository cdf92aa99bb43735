// `kvq attn`: attention fidelity of one or more strategies on a KV dump.
// Streams the dump layer by layer; the original attention of a layer is
// computed once and shared by every strategy.
#include <algorithm>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "command.h"
#include "kvq/capture/dump.h"
#include "kvq/common/error.h"
#include "kvq/common/io.h"
#include "kvq/common/strings.h"
#include "kvq/metrics/attention_fidelity.h"
#include "kvq/quant/strategy.h"
#include "paths.h"

namespace kvq::cli {
namespace {

struct Options {
  std::string kv;
  std::string strategies;
  std::string layers = "all";
  double floor = 0.99;
  std::string csv;
  std::string json;
  std::string positions_csv;
};

// all | spot (0, 7, 8, 23: those that exist) | a comma list of layer numbers.
std::vector<int> ParseLayers(const std::string& text, int num_layers) {
  std::vector<int> layers;
  if (text == "all") {
    for (int l = 0; l < num_layers; ++l) layers.push_back(l);
    return layers;
  }
  if (text == "spot") {
    for (int l : {0, 7, 8, 23}) {
      if (l < num_layers) layers.push_back(l);
    }
    return layers;
  }
  for (const std::string_view field : SplitFields(text, ',')) {
    const std::string item(field);
    size_t used = 0;
    int layer = -1;
    try {
      layer = std::stoi(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (item.empty() || used != item.size() || layer < 0) {
      ThrowInput("--layers: '{}' is not a layer number (use all, spot or e.g. 0,8,16)", item);
    }
    if (layer >= num_layers) {
      ThrowInput("--layers: layer {} does not exist (the dump has {} layers)", layer, num_layers);
    }
    if (std::find(layers.begin(), layers.end(), layer) == layers.end()) layers.push_back(layer);
  }
  return layers;
}

void PrintStrategy(const std::string& name, const std::vector<LayerFidelity>& layers,
                   double floor) {
  std::printf("strategy %s\n", name.c_str());
  std::printf("%5s  %12s  %9s  %9s  %s\n", "layer", "nmse", "cos", "worst cos", "at (head, token)");
  const LayerFidelity* worst = nullptr;
  std::vector<int> below;
  for (const LayerFidelity& l : layers) {
    std::printf("%5d  %12.6e  %9.6f  %9.6f  (%d, %lld)\n", l.layer, l.all.nmse(), l.all.cos(),
                l.all.cos_min, l.all.cos_min_head, static_cast<long long>(l.all.cos_min_token));
    if (worst == nullptr || l.all.cos() < worst->all.cos()) worst = &l;
    if (!(l.all.cos() >= floor)) below.push_back(l.layer);
  }
  if (worst == nullptr) return;
  std::string verdict = fmt::format("verdict {}: worst layer {} (cos {:.6f}, nmse {:.3e}); ", name,
                                    worst->layer, worst->all.cos(), worst->all.nmse());
  if (below.empty()) {
    verdict += fmt::format("all {} layers above the floor {}", layers.size(), floor);
  } else {
    verdict += fmt::format("{} of {} layers below the floor {}: {}", below.size(), layers.size(),
                           floor, fmt::join(below, ","));
  }
  std::printf("%s\n\n", verdict.c_str());
}

void Run(const Options& o) {
  std::vector<PathArg> inputs = PlanInputs("--strategy", o.strategies);
  inputs.push_back({"--kv", o.kv});
  CheckOutputs({{"--csv", o.csv}, {"--json", o.json}, {"--positions-csv", o.positions_csv}},
               inputs);
  const std::vector<Strategy> strategies = ParseStrategyList(o.strategies);
  if (strategies.empty()) ThrowInput("--strategy: no strategy given");
  if (!(o.floor >= -1 && o.floor <= 1))
    ThrowInput("--floor: {} is not a cosine in [-1, 1]", o.floor);
  const KvDump dump = KvDump::Open(o.kv);
  const DumpInfo& info = dump.info();
  for (const Strategy& s : strategies) {
    s.Validate(KvGeometry{info.num_layers, info.num_kv_heads, info.head_dim});
  }
  const std::vector<int> layers = ParseLayers(o.layers, info.num_layers);
  // Open the outputs first: a bad path fails before the work, and nothing
  // appears at either path unless the run completes.
  std::optional<AtomicFile> csv, json, positions_csv;
  for (auto [flag, path, file] : {std::tuple{"--csv", &o.csv, &csv},
                                  {"--json", &o.json, &json},
                                  {"--positions-csv", &o.positions_csv, &positions_csv}}) {
    if (path->empty()) continue;
    try {
      file->emplace(*path);
    } catch (const RuntimeError& e) {
      // An unwritable output is a runtime failure (exit 1) in every command.
      ThrowRuntime("{}: {}", flag, e.what());
    }
  }

  std::vector<std::vector<LayerFidelity>> results(strategies.size());
  LayerReference ref;
  FidelityWorkspace workspace;
  const bool progress = StderrIsTerminal();
  for (size_t i = 0; i < layers.size(); ++i) {
    if (progress) std::fprintf(stderr, "\rlayer %d (%zu/%zu)", layers[i], i + 1, layers.size());
    ref.Load(dump, layers[i]);
    for (size_t s = 0; s < strategies.size(); ++s) {
      results[s].push_back(EvaluateLayer(ref, strategies[s], workspace));
    }
  }
  if (progress) std::fprintf(stderr, "\r%40s\r", "");

  std::vector<FidelityRow> rows;
  std::vector<PositionRow> position_rows;
  for (size_t s = 0; s < strategies.size(); ++s) {
    PrintStrategy(strategies[s].name, results[s], o.floor);
    for (const LayerFidelity& l : results[s]) {
      for (FidelityRow& r : LayerRows(strategies[s].name, l)) rows.push_back(std::move(r));
    }
    for (PositionRow& r : PositionRows(strategies[s].name, results[s], info.chunk_len)) {
      position_rows.push_back(std::move(r));
    }
  }
  if (csv) {
    csv->Write(FidelityCsv(rows));
    csv->Commit();
  }
  if (json) {
    json->Write(FidelityJson(rows, position_rows));
    json->Commit();
  }
  if (positions_csv) {
    positions_csv->Write(PositionCsv(position_rows));
    positions_csv->Commit();
  }
}

Runner Setup(CLI::App& app) {
  auto o = std::make_shared<Options>();
  app.add_option("--kv", o->kv, "KV dump (safetensors from kvq capture)")->required();
  app.add_option("--strategy", o->strategies,
                 "Strategies, comma separated: fp16, strat1, strat2, strat3, k=...,v=..., "
                 "plan:FILE")
      ->required();
  app.add_option("--layers", o->layers, "all | spot (0,7,8,23) | a list such as 0,8,16")
      ->capture_default_str();
  app.add_option("--floor", o->floor, "Quality floor on a layer's mean cosine for the verdict")
      ->capture_default_str();
  app.add_option("--csv", o->csv, "Write rows strategy,layer,head,nmse,cos,cos_min");
  app.add_option("--json", o->json,
                 "Write the same rows as JSON (with worst position, max abs) and the error by "
                 "position");
  app.add_option("--positions-csv", o->positions_csv,
                 "Write NMSE and cos per position bucket ([0,64), [64,128), [128,256), ...) per "
                 "strategy and layer (and all layers): strategy,layer,position_begin,position_end,"
                 "vectors,nmse,cos");
  return [o] { Run(*o); };
}

KVQ_COMMAND("attn", "Attention fidelity: outputs with original vs quantized K/V", Setup);

}  // namespace
}  // namespace kvq::cli
