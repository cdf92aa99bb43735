#include "perplexity_progress.h"

#include <string>

#include "progress.h"

namespace kvq::cli {

PerplexityReport EvaluatePerplexityWithProgress(Model& model, std::span<const int32_t> ids,
                                                int64_t chunk_len,
                                                const std::vector<Strategy>& strategies) {
  const int layers = model.config().num_layers;
  const int passes = 1 + static_cast<int>(strategies.size());
  Progress progress("ppl", int64_t{passes} * layers, "layers",
                    static_cast<double>(ids.size()) / layers, "tok");
  int pass = 0;
  std::string last_phase;
  PerplexityReport report =
      EvaluatePerplexity(model, ids, chunk_len, strategies, [&](const PerplexityProgress& p) {
        if (p.phase == "logits") return;
        if (p.phase != last_phase) {  // A new pass starts.
          last_phase = p.phase;
          ++pass;
        }
        progress.Update(int64_t{pass - 1} * layers + p.done);
      });
  progress.Finish();
  return report;
}

}  // namespace kvq::cli
