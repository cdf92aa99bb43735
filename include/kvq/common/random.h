#pragma once
// kvq's own deterministic random numbers: splitmix64, and normals by
// Box-Muller, so results are identical across compilers and standard
// libraries (std::normal_distribution is not).
#include <cmath>
#include <cstdint>
#include <numbers>
#include <span>

namespace kvq {

class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}

  uint64_t Next() {
    state_ += 0x9E3779B97F4A7C15ull;
    uint64_t z = state_;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }

  // Uniform in [0, 1) with 53 random bits.
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }
  double Uniform(double low, double high) { return low + (high - low) * Uniform(); }
  // Uniform in (0, 1): the midpoint of one of 2^53 equal cells, never 0 or 1.
  double UniformOpen() { return (static_cast<double>(Next() >> 11) + 0.5) * 0x1.0p-53; }

  // Standard normal; one Box-Muller draw per call (the cosine branch).
  double Normal() {
    const double u1 = 1.0 - Uniform();  // (0, 1]
    return BoxMuller(u1, Uniform());
  }
  // The same distribution from two UniformOpen draws: a different sequence,
  // kept because the synthetic KV dumps (capture/synthetic.h), the quantizer
  // tests built on them and the figures docs/planner.md quotes depend on it.
  double NormalOpen() {
    const double u1 = UniformOpen();
    return BoxMuller(u1, UniformOpen());
  }

  // out[i] = float(stddev * draw()), in order: random weights (Normal) and
  // synthetic tensors (NormalOpen).
  void FillNormal(std::span<float> out, double stddev,
                  double (SplitMix64::*draw)() = &SplitMix64::Normal) {
    for (float& x : out) x = static_cast<float>(stddev * (this->*draw)());
  }

 private:
  // sqrt(-2 ln u1) cos(2 pi u2), u1 in (0, 1].
  static double BoxMuller(double u1, double u2) {
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
  }

  uint64_t state_;
};

}  // namespace kvq
