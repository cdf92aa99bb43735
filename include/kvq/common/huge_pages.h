#pragma once
// An allocator for large buffers: 2 MiB-aligned and advised for transparent
// huge pages (MADV_HUGEPAGE, where the kernel's THP mode is "madvise"), so
// that first touch costs one page fault per 2 MiB instead of one per 4 KiB.
// Fresh memory in 4 KiB pages costs about 3 s per GiB on the project's
// machine kind (docs/perplexity.md); with huge pages it is about memset's
// speed. Small requests go to operator new as usual. Without MADV_HUGEPAGE
// (Linux only; macOS has none) the buffers are just 2 MiB-aligned.
#include <cstddef>
#include <new>
#include <vector>

namespace kvq {

// From this size on, allocations are huge-page aligned and advised.
inline constexpr std::size_t kHugePageThreshold = std::size_t{4} << 20;

void* AllocateHugePages(std::size_t bytes);  // Throws std::bad_alloc.
void FreeHugePages(void* p);

template <class T>
struct HugePageAllocator {
  using value_type = T;
  HugePageAllocator() = default;
  template <class U>
  HugePageAllocator(const HugePageAllocator<U>&) noexcept {}  // Implicit: rebinding needs it.

  T* allocate(std::size_t n) {
    const std::size_t bytes = n * sizeof(T);
    if (bytes < kHugePageThreshold) return static_cast<T*>(::operator new(bytes));
    return static_cast<T*>(AllocateHugePages(bytes));
  }
  void deallocate(T* p, std::size_t n) noexcept {
    const std::size_t bytes = n * sizeof(T);
    if (bytes < kHugePageThreshold) {
      ::operator delete(p);
    } else {
      FreeHugePages(p);
    }
  }
  template <class U>
  bool operator==(const HugePageAllocator<U>&) const noexcept {
    return true;
  }
};

template <class T>
using HugeVector = std::vector<T, HugePageAllocator<T>>;

}  // namespace kvq
