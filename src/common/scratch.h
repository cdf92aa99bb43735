#pragma once
// Per-thread scratch for hot loops: a float buffer aligned to a cache line
// that only ever grows. Held thread_local, it is allocated on a thread's first
// call and reused by every later one (OpenMP keeps its worker threads), so
// the loops never pay for fresh pages.
#include <cstddef>
#include <memory>
#include <new>

namespace kvq {

class ScratchBuffer {
 public:
  // At least `count` floats; the contents of an earlier call are kept only
  // when the buffer did not grow.
  float* Get(size_t count) {
    if (count > capacity_) {
      storage_.reset(new (std::align_val_t{64}) float[count]);
      capacity_ = count;
    }
    return storage_.get();
  }

 private:
  struct AlignedDelete {
    void operator()(float* p) const { ::operator delete[](p, std::align_val_t{64}); }
  };
  std::unique_ptr<float[], AlignedDelete> storage_;
  size_t capacity_ = 0;
};

}  // namespace kvq
