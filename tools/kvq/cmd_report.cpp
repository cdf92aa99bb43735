// `kvq report`: rebuild a run folder's figures and report.html from its
// run.json and result files alone (no model, no dump needed).
#include <cstdio>
#include <memory>
#include <string>

#include "command.h"
#include "kvq/report/report.h"

namespace kvq::cli {
namespace {

Runner Setup(CLI::App& app) {
  auto run = std::make_shared<std::string>();
  app.add_option("--run", *run, "Run folder written by kvq run")->required();
  return [run] {
    const report::ReportFiles files = report::BuildReport(*run);
    std::fprintf(stderr, "kvq report: %zu figures; report: %s\n", files.figures.size(),
                 files.html.string().c_str());
    std::printf("%s\n", files.html.string().c_str());
  };
}

KVQ_COMMAND("report", "Rebuild a run folder's figures and report.html from its CSV/JSON files",
            Setup);

}  // namespace
}  // namespace kvq::cli
