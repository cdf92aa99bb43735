#pragma once
// Exact solvers the planner is built on (docs/planner.md):
//
// - CostGrid: byte costs are rationals (bytes per token of a format, some
//   averaged over a prompt), so they are mapped exactly onto an integer grid:
//   cost * denominator is an integer for every cost, and the grid step is the
//   gcd of those integers. A dynamic program over that grid loses nothing.
// - SolveMultipleChoiceKnapsack: pick exactly one item per group so that the
//   summed cost stays within a budget and the summed value is minimal. Dynamic
//   programming over the integer cost grid: O(groups x items x cells), exact.
#include <cstdint>
#include <span>
#include <vector>

namespace kvq {

class CostGrid {
 public:
  // Finds the smallest denominator q <= kMaxDenominator per cost such that
  // cost * q is an integer (to 1e-12 relative), takes their lcm as the common
  // denominator and the gcd of the scaled costs as the step. Throws
  // InputError when a cost is negative, not finite or needs a larger
  // denominator.
  explicit CostGrid(std::span<const double> costs);

  // cost in grid steps; cost must be one of the costs given (or a sum of
  // them).
  int64_t Steps(double cost) const;
  // The largest number of steps whose cost is <= budget (a budget equal to a
  // plan's cost up to 1e-9 relative counts as enough).
  int64_t StepsWithin(double budget) const;
  // Bytes of one grid step.
  double step() const { return static_cast<double>(step_) / static_cast<double>(denominator_); }

  static constexpr int64_t kMaxDenominator = 1 << 16;

 private:
  int64_t denominator_ = 1;  // cost * denominator_ is an integer.
  int64_t step_ = 1;         // gcd of the scaled costs, in 1/denominator_ units.
};

struct KnapsackItem {
  int64_t cost = 0;  // In grid steps, >= 0.
  double value = 0;  // Minimised; +inf allowed (never chosen unless forced), NaN and -inf not.
};

struct KnapsackSolution {
  bool feasible = false;
  std::vector<int> choice;  // Per group, the index of its chosen item.
  int64_t cost = 0;         // Sum of the chosen costs.
  double value = 0;         // Sum of the chosen values, added in group order.
};

// Minimises sum value over one item per group subject to sum cost <=
// capacity. Among optimal choices it returns one of least cost; among those
// the first items in group order win. The value is summed in group order
// ((v0 + v1) + v2 ...), so a caller adding the same values in the same
// order gets the identical double. Infeasible (feasible = false) when even
// the cheapest items exceed the capacity. Throws InputError when the table
// would exceed kMaxKnapsackCells (groups x usable capacity cells), and
// RuntimeError naming the group and item for a value that is NaN or -inf.
KnapsackSolution SolveMultipleChoiceKnapsack(std::span<const std::vector<KnapsackItem>> groups,
                                             int64_t capacity);

inline constexpr int64_t kMaxKnapsackCells = int64_t{1} << 26;

}  // namespace kvq
