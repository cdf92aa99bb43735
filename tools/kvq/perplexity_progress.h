#pragma once
// EvaluatePerplexity with a progress line, for `kvq ppl` and `kvq run`.
#include <cstdint>
#include <span>
#include <vector>

#include "kvq/metrics/perplexity.h"

namespace kvq::cli {

// One bar over every pass (the baseline, then one per strategy), each pass
// `num_layers` steps; the rate is shown in tokens per second.
PerplexityReport EvaluatePerplexityWithProgress(Model& model, std::span<const int32_t> ids,
                                                int64_t chunk_len,
                                                const std::vector<Strategy>& strategies);

}  // namespace kvq::cli
