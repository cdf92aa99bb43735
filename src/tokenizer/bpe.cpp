#include "tokenizer/bpe.h"

#include <algorithm>
#include <array>
#include <limits>
#include <queue>

namespace kvq::bpe {
namespace {

// Pieces up to this many symbols use the scan; it touches a few cache lines
// and allocates nothing, where the heap pays for its bookkeeping.
constexpr size_t kScanMaxSymbols = 48;

}  // namespace

void MergeTable::Reserve(size_t merges) {
  size_t capacity = 16;
  while (capacity < merges * 2) capacity *= 2;  // load factor <= 1/2
  if (capacity <= slots_.size()) return;
  std::vector<Slot> old = std::move(slots_);
  slots_.assign(capacity, Slot{});
  mask_ = capacity - 1;
  count_ = 0;
  for (const Slot& slot : old) {
    if (slot.key != kEmpty) {
      Insert(static_cast<int32_t>(slot.key >> 32), static_cast<int32_t>(slot.key & 0xFFFFFFFFu),
             slot.merge);
    }
  }
}

void MergeTable::Grow() { Reserve(std::max<size_t>(count_ + 1, slots_.size())); }

void MergeTable::Insert(int32_t left, int32_t right, Merge merge) {
  if ((count_ + 1) * 2 > slots_.size()) Grow();
  const uint64_t key = Key(left, right);
  for (size_t i = Hash(key) & mask_;; i = (i + 1) & mask_) {
    Slot& slot = slots_[i];
    if (slot.key == key) {
      slot.merge = merge;
      return;
    }
    if (slot.key == kEmpty) {
      slot.key = key;
      slot.merge = merge;
      ++count_;
      return;
    }
  }
}

void MergeByScan(const MergeTable& merges, std::vector<int32_t>& symbols) {
  size_t n = symbols.size();
  if (n < 2) return;
  // pair[i] holds the merge of (symbols[i], symbols[i+1]), rank INT32_MAX
  // when there is none; after a merge only the two pairs that touch the new
  // symbol are looked up again.
  constexpr int32_t kNone = std::numeric_limits<int32_t>::max();
  std::array<Merge, kScanMaxSymbols> local;
  std::vector<Merge> heap_pairs;
  Merge* pair = local.data();
  if (n > local.size()) {
    heap_pairs.resize(n);
    pair = heap_pairs.data();
  }
  const auto lookup = [&](size_t i) {
    const Merge* merge = merges.Find(symbols[i], symbols[i + 1]);
    pair[i] = merge != nullptr ? *merge : Merge{kNone, -1};
  };
  for (size_t i = 0; i + 1 < n; ++i) lookup(i);
  while (n > 1) {
    size_t best = 0;
    for (size_t i = 1; i + 1 < n; ++i) {
      if (pair[i].rank < pair[best].rank) best = i;  // strict: leftmost wins ties
    }
    if (pair[best].rank == kNone) break;
    symbols[best] = pair[best].merged;
    for (size_t i = best + 1; i + 1 < n; ++i) {
      symbols[i] = symbols[i + 1];
      pair[i] = pair[i + 1];
    }
    --n;
    if (best + 1 < n) lookup(best);
    if (best > 0) lookup(best - 1);
  }
  symbols.resize(n);
}

void MergeByHeap(const MergeTable& merges, std::vector<int32_t>& symbols) {
  const auto n = static_cast<int32_t>(symbols.size());
  if (n < 2) return;
  // Doubly linked list over the original positions; a merged-away position
  // gets id -1. Positions keep their left-to-right order, so the heap's
  // (rank, position) order is "lowest rank, then leftmost".
  std::vector<int32_t> prev(static_cast<size_t>(n)), next(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i) {
    prev[static_cast<size_t>(i)] = i - 1;
    next[static_cast<size_t>(i)] = i + 1 < n ? i + 1 : -1;
  }
  using Candidate = std::pair<int32_t, int32_t>;  // (rank, left position)
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;
  const auto push = [&](int32_t left) {
    const int32_t right = next[static_cast<size_t>(left)];
    if (right < 0) return;
    if (const Merge* merge =
            merges.Find(symbols[static_cast<size_t>(left)], symbols[static_cast<size_t>(right)])) {
      heap.emplace(merge->rank, left);
    }
  };
  for (int32_t i = 0; i + 1 < n; ++i) push(i);

  while (!heap.empty()) {
    const auto [rank, left] = heap.top();
    heap.pop();
    const auto l = static_cast<size_t>(left);
    if (symbols[l] < 0) continue;
    const int32_t right = next[l];
    if (right < 0) continue;
    const auto r = static_cast<size_t>(right);
    const Merge* merge = merges.Find(symbols[l], symbols[r]);
    // A rank names one pair, so a different (or no) rank means the pair at
    // this position changed since the candidate was pushed.
    if (merge == nullptr || merge->rank != rank) continue;
    symbols[l] = merge->merged;
    symbols[r] = -1;
    next[l] = next[r];
    if (next[r] >= 0) prev[static_cast<size_t>(next[r])] = left;
    if (prev[l] >= 0) push(prev[l]);
    push(left);
  }
  symbols.erase(std::remove(symbols.begin(), symbols.end(), -1), symbols.end());
}

void MergeSymbols(const MergeTable& merges, std::vector<int32_t>& symbols) {
  if (symbols.size() <= kScanMaxSymbols) {
    MergeByScan(merges, symbols);
  } else {
    MergeByHeap(merges, symbols);
  }
}

}  // namespace kvq::bpe
