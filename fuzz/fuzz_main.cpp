// The libFuzzer driver of one target: KVQ_FUZZ_TARGET names an entry of
// kvq::fuzz::kTargets (fuzz/entry_points.h); fuzz/CMakeLists.txt builds this
// file once per target as fuzz_<name>.
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "entry_points.h"

#ifndef KVQ_FUZZ_TARGET
#error "KVQ_FUZZ_TARGET must name a fuzz target"
#endif

namespace {

void (*g_run)(kvq::fuzz::Bytes) = nullptr;

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  for (const auto& target : kvq::fuzz::kTargets) {
    if (std::strcmp(target.name, KVQ_FUZZ_TARGET) != 0) continue;
    g_run = target.run;
    // Loading the 11 MB tokenizer takes seconds under ASan: not inside the
    // first input's time limit.
    if (target.uses_qwen) kvq::fuzz::Qwen();
  }
  if (g_run == nullptr) {
    std::fprintf(stderr, "no fuzz target '%s'\n", KVQ_FUZZ_TARGET);
    std::abort();
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  g_run({data, size});
  return 0;
}
