#include "kvq/plan/knapsack.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "kvq/common/error.h"

namespace kvq {
namespace {

// cost * q within 1e-12 relative of an integer: a few ulps of the formulas
// that computed the costs, far below the distance of an irrational cost to
// its best fractions with denominators up to kMaxDenominator.
bool IsIntegral(double scaled) {
  return std::abs(scaled - std::nearbyint(scaled)) <= 1e-12 * std::max(1.0, std::abs(scaled));
}

}  // namespace

CostGrid::CostGrid(std::span<const double> costs) {
  std::vector<int64_t> scaled;
  for (double c : costs) {
    if (!std::isfinite(c) || c < 0) ThrowInput("byte cost {} is not a finite value >= 0", c);
    int64_t q = 1;
    while (q <= kMaxDenominator && !IsIntegral(c * static_cast<double>(q))) ++q;
    if (q > kMaxDenominator) {
      ThrowInput("byte cost {} is not a fraction with a denominator up to {}", c, kMaxDenominator);
    }
    denominator_ = std::lcm(denominator_, q);
    if (denominator_ > (int64_t{1} << 40)) {
      ThrowInput("byte costs need a common denominator above 2^40; use fewer distinct formats");
    }
  }
  int64_t g = 0;
  for (double c : costs) {
    g = std::gcd(g, static_cast<int64_t>(std::nearbyint(c * static_cast<double>(denominator_))));
  }
  step_ = g > 0 ? g : 1;
}

int64_t CostGrid::Steps(double cost) const {
  const double scaled = cost * static_cast<double>(denominator_) / static_cast<double>(step_);
  KVQ_CHECK(IsIntegral(scaled));
  return static_cast<int64_t>(std::nearbyint(scaled));
}

int64_t CostGrid::StepsWithin(double budget) const {
  const double scaled = budget * static_cast<double>(denominator_) / static_cast<double>(step_);
  if (scaled < 0) return -1;
  // Budgets past any cost (1e30 bytes/token) are "everything fits": clamp
  // before converting, which would be undefined past int64's range.
  if (!(scaled < 0x1p60)) return int64_t{1} << 60;
  // Tolerance for budgets written in decimal that equal a plan's cost.
  return static_cast<int64_t>(std::floor(scaled * (1 + 1e-12) + 1e-9));
}

KnapsackSolution SolveMultipleChoiceKnapsack(std::span<const std::vector<KnapsackItem>> groups,
                                             int64_t capacity) {
  KnapsackSolution solution;
  // Offsets: every group pays at least its cheapest item; the table covers
  // only the extra cost, up to the most that any choice can add.
  int64_t base = 0, extra_max = 0;
  std::vector<int64_t> min_cost(groups.size());
  for (size_t g = 0; g < groups.size(); ++g) {
    KVQ_CHECK(!groups[g].empty() && groups[g].size() < 65535);
    int64_t lo = std::numeric_limits<int64_t>::max(), hi = 0;
    for (const KnapsackItem& item : groups[g]) {
      KVQ_CHECK(item.cost >= 0);
      // NaN has no order and -inf + inf is NaN: either would make the table
      // meaningless. The planner refuses such measurements by name first.
      if (std::isnan(item.value) || item.value == -std::numeric_limits<double>::infinity()) {
        ThrowRuntime("knapsack: group {} item {} has the value {}; values must be numbers or +inf",
                     g, &item - groups[g].data(), item.value);
      }
      lo = std::min(lo, item.cost);
      hi = std::max(hi, item.cost);
    }
    min_cost[g] = lo;
    base += lo;
    extra_max += hi - lo;
  }
  if (capacity < base) return solution;
  const int64_t cells = std::min(capacity - base, extra_max) + 1;
  if (static_cast<int64_t>(groups.size()) * cells > kMaxKnapsackCells) {
    ThrowInput(
        "the knapsack table would need {} x {} cells (limit {}); use fewer formats or a "
        "coarser cost grid",
        groups.size(), cells, kMaxKnapsackCells);
  }
  const double inf = std::numeric_limits<double>::infinity();
  const auto n = static_cast<size_t>(cells);
  // best[c]: least value with extra cost <= c over the groups so far.
  std::vector<double> best(n, 0.0), next(n);
  // Every cell is reachable: each group has an item of extra cost 0.
  std::vector<uint16_t> pick(groups.size() * n);
  std::vector<uint8_t> set(n);
  for (size_t g = 0; g < groups.size(); ++g) {
    std::fill(next.begin(), next.end(), inf);
    std::fill(set.begin(), set.end(), 0);
    uint16_t* row = pick.data() + g * n;
    for (size_t i = 0; i < groups[g].size(); ++i) {
      const KnapsackItem& item = groups[g][i];
      const auto w = static_cast<size_t>(item.cost - min_cost[g]);
      for (size_t c = w; c < n; ++c) {
        const double v = best[c - w] + item.value;
        // Strictly better, or the first item that fits (so that a cell whose
        // values are all +inf still points at an item that fits): ties keep
        // the earlier item.
        if (set[c] == 0 || v < next[c]) {
          next[c] = v;
          set[c] = 1;
          row[c] = static_cast<uint16_t>(i);
        }
      }
    }
    best.swap(next);
  }
  // The cheapest extra cost that reaches the optimum (best is non-increasing
  // in c).
  size_t c = n - 1;
  const double optimum = best[c];
  while (c > 0 && best[c - 1] == optimum) --c;
  solution.feasible = true;
  solution.choice.assign(groups.size(), 0);
  for (size_t g = groups.size(); g-- > 0;) {
    const int i = pick[g * n + c];
    solution.choice[g] = i;
    c -= static_cast<size_t>(groups[g][static_cast<size_t>(i)].cost - min_cost[g]);
  }
  solution.value = 0;
  for (size_t g = 0; g < groups.size(); ++g) {
    const KnapsackItem& item = groups[g][static_cast<size_t>(solution.choice[g])];
    solution.cost += item.cost;
    solution.value += item.value;
  }
  return solution;
}

}  // namespace kvq
