#include "kvq/common/huge_pages.h"

#include <sys/mman.h>

#include <cstdlib>

namespace kvq {
namespace {

constexpr std::size_t kHugePage = std::size_t{2} << 20;

std::size_t Rounded(std::size_t bytes) { return (bytes + kHugePage - 1) / kHugePage * kHugePage; }

}  // namespace

void* AllocateHugePages(std::size_t bytes) {
  void* p = std::aligned_alloc(kHugePage, Rounded(bytes));
  if (p == nullptr) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE  // Linux; elsewhere (macOS) the buffer is only 2 MiB-aligned.
  // Only a hint: without THP support the memory is ordinary pages.
  ::madvise(p, Rounded(bytes), MADV_HUGEPAGE);
#endif
  return p;
}

void FreeHugePages(void* p) { std::free(p); }

}  // namespace kvq
