#pragma once
// Byte-pair merging by merge rank, the rule of Hugging Face's BPE model
// (without dropout): repeatedly merge the adjacent pair with the lowest rank,
// the leftmost one among equals, until no adjacent pair has a merge.
#include <cstdint>
#include <span>
#include <vector>

namespace kvq::bpe {

struct Merge {
  int32_t rank = 0;    // position in the merges list: lower merges first
  int32_t merged = 0;  // id of the token the pair becomes
};

// (left id, right id) -> Merge, open addressing with linear probing. Lookups
// sit on the hot path of every piece the cache has not seen.
class MergeTable {
 public:
  void Reserve(size_t merges);
  // Later insertions of the same pair replace earlier ones (Hugging Face
  // collects its merges into a map, so a duplicated pair keeps its last rank).
  void Insert(int32_t left, int32_t right, Merge merge);
  const Merge* Find(int32_t left, int32_t right) const {
    if (slots_.empty()) return nullptr;
    const uint64_t key = Key(left, right);
    for (size_t i = Hash(key) & mask_;; i = (i + 1) & mask_) {
      const Slot& slot = slots_[i];
      if (slot.key == key) return &slot.merge;
      if (slot.key == kEmpty) return nullptr;
    }
  }
  size_t size() const { return count_; }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t{0};
  struct Slot {
    uint64_t key = kEmpty;
    Merge merge;
  };
  static uint64_t Key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) |
           static_cast<uint32_t>(right);
  }
  static size_t Hash(uint64_t key) {
    key ^= key >> 33;
    key *= 0xFF51AFD7ED558CCDULL;
    key ^= key >> 33;
    return static_cast<size_t>(key);
  }
  void Grow();

  std::vector<Slot> slots_;
  size_t mask_ = 0;
  size_t count_ = 0;
};

// Merges `symbols` (the ids of one piece's bytes, in order) in place. Chooses
// the quadratic scan for short pieces and the heap for long ones; both give
// the same result (tested).
void MergeSymbols(const MergeTable& merges, std::vector<int32_t>& symbols);

// The two strategies, exposed for the test that checks they agree.
// Scan: O(n^2), fastest for the short pieces that make up real text.
void MergeByScan(const MergeTable& merges, std::vector<int32_t>& symbols);
// Heap: O(n log n) with a linked list over positions and a min-heap of
// (rank, position) candidates; stale candidates are skipped when popped.
void MergeByHeap(const MergeTable& merges, std::vector<int32_t>& symbols);

}  // namespace kvq::bpe
