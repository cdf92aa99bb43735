#include "kvq/common/error.h"

#include <cstdio>
#include <cstdlib>

namespace kvq {

void CheckFailed(const char* condition, const char* file, int line) {
  std::fprintf(stderr, "kvq: internal error: check failed: %s at %s:%d\n", condition, file, line);
  std::abort();
}

}  // namespace kvq
