// `kvq plot`: one figure from one result file, as a standalone SVG.
#include <cstdio>
#include <memory>
#include <string>

#include "command.h"
#include "kvq/common/error.h"
#include "kvq/common/io.h"
#include "kvq/report/report.h"
#include "kvq/report/results.h"
#include "paths.h"

namespace kvq::cli {
namespace {

struct Options {
  std::string kind, in, out, strategy, title;
  double floor = report::kDefaultFloor;
};

std::string Figure(const Options& o) {
  using namespace report;
  if (o.kind == "nmse") return NmseFigure(ReadQuantCsv(o.in), o.title);
  if (o.kind == "heatmap") {
    const auto rows = ReadQuantCsv(o.in);
    const auto names = StrategiesOf(rows);
    if (names.empty()) ThrowInput("--in {}: no rows", o.in);
    const std::string strategy = o.strategy.empty() ? names.front() : o.strategy;
    if (std::find(names.begin(), names.end(), strategy) == names.end()) {
      ThrowInput("--strategy '{}': not in {} ({} strategies there)", strategy, o.in, names.size());
    }
    return HeatmapFigure(rows, strategy, o.title);
  }
  if (o.kind == "cos") return CosFigure(ReadAttnCsv(o.in), o.floor, o.title);
  if (o.kind == "bytes") return BytesFigure(ReadBytesCsv(o.in), o.title);
  if (o.kind == "pareto") return ParetoFigure(ReadParetoCsv(o.in), o.title);
  if (o.kind == "ppl") return PplFigure(ReadPplJson(o.in), o.title);
  return KlFigure(ReadPplJson(o.in), o.title);
}

Runner Setup(CLI::App& app) {
  auto o = std::make_shared<Options>();
  app.add_option("--kind", o->kind,
                 "nmse, heatmap (quant.csv); cos (attn.csv); bytes (bytes.csv); pareto "
                 "(pareto.csv); ppl, kl (ppl.json)")
      ->required()
      ->check(CLI::IsMember({"nmse", "heatmap", "cos", "bytes", "pareto", "ppl", "kl"}));
  app.add_option("--in", o->in, "Input file from a run folder (or kvq quant/attn/ppl)")->required();
  app.add_option("--out", o->out, "Output .svg")->required();
  app.add_option("--strategy", o->strategy, "heatmap: which strategy (default: the first)");
  app.add_option("--floor", o->floor, "cos: the quality floor line")->capture_default_str();
  app.add_option("--title", o->title, "Context line under the figure's title (model, corpus)");
  return [o] {
    CheckOutputs({{"--out", o->out}}, {{"--in", o->in}});
    WriteTextFileAtomic(o->out, Figure(*o));
  };
}

KVQ_COMMAND("plot", "Draw one figure (SVG) from a result CSV/JSON", Setup);

}  // namespace
}  // namespace kvq::cli
