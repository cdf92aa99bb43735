// `kvq reproduce`: did a run reproduce the reference study? Prints the
// verdict table of every (model, corpus) of the run on the reference
// protocol, computed from the run folder's files and the published tables
// shipped in data/reference/kvmix (include/kvq/report/reproduce.h). Exit 0
// when every claim is reproduced, 1 when one is not, 2 when nothing in the
// run is on the reference protocol.
#include <cstdio>
#include <memory>
#include <string>

#include <fmt/format.h>

#include "command.h"
#include "kvq/common/error.h"
#include "kvq/report/reproduce.h"

namespace kvq::cli {
namespace {

struct Options {
  std::string run;
  std::string published;
};

void Reproduce(const Options& o) {
  const std::filesystem::path data =
      o.published.empty() ? report::PublishedDataDir() : std::filesystem::path(o.published);
  const report::PublishedResults published = report::LoadPublished(data);
  std::vector<std::string> skipped;
  const auto reproductions = report::ReproduceRun(o.run, published, &skipped);
  for (const std::string& s : skipped)
    std::fprintf(stderr, "kvq reproduce: skipped %s\n", s.c_str());
  if (reproductions.empty()) {
    ThrowInput(
        "--run {}: no model and corpus on the reference protocol (Qwen2.5-0.5B, wikitext "
        "or c4, 8 prompts of 512 tokens)",
        o.run);
  }
  std::fputs(report::VerdictText(reproductions).c_str(), stdout);
  std::fflush(stdout);
  int failed = 0, claims = 0;
  for (const auto& r : reproductions) {
    for (const auto& c : r.claims) {
      ++claims;
      failed +=
          c.verdict == report::Verdict::kReproduced || c.verdict == report::Verdict::kNotPublished
              ? 0
              : 1;
    }
  }
  if (failed > 0) {
    ThrowRuntime("--run {}: {} of {} claims not reproduced (table above)", o.run, failed, claims);
  }
  std::fprintf(stderr, "kvq reproduce: every claim reproduced (%d claims)\n", claims);
}

Runner Setup(CLI::App& app) {
  auto o = std::make_shared<Options>();
  app.add_option("--run", o->run, "Run folder written by kvq run")->required();
  app.add_option("--published", o->published,
                 "Folder of the published tables (default: the shipped data/reference/kvmix)");
  return [o] { Reproduce(*o); };
}

KVQ_COMMAND("reproduce",
            "Compare a run with the reference study's published results: one verdict per claim",
            Setup);

}  // namespace
}  // namespace kvq::cli
