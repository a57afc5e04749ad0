// Draws: seeded, counter-based random numbers for the bandits.
//
// A Draws is a small generator (splitmix64) started from (seed, counter): a
// bandit hands each decision its own counter from an atomic, so concurrent
// decisions never share generator state, and the same seed and order of calls
// give the same draws. Header-only; nothing allocates; nothing throws.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

namespace fastroute {

class Draws {
 public:
  using result_type = std::uint64_t;

  Draws(std::uint64_t seed, std::uint64_t counter) noexcept
      : state_(mix(seed ^ mix(counter + 0x9E3779B97F4A7C15ULL))) {}

  static constexpr result_type min() { return 0; }
  static constexpr result_type max() { return std::numeric_limits<result_type>::max(); }

  result_type operator()() noexcept {
    state_ += 0x9E3779B97F4A7C15ULL;
    return mix(state_);
  }

  // Uniform in the open interval (0, 1): never 0, so log() is finite.
  double uniform() noexcept { return (static_cast<double>((*this)() >> 11) + 0.5) * 0x1.0p-53; }

  // Index uniform in [0, n), n > 0 (the modulo bias is below 2^-40 for n < 2^24).
  std::uint64_t below(std::uint64_t n) noexcept { return (*this)() % n; }

  // Standard normal (Box-Muller; the second value is dropped for simplicity).
  double normal() noexcept {
    const double radius = std::sqrt(-2.0 * std::log(uniform()));
    return radius * std::cos(6.283185307179586 * uniform());
  }

  // Gamma(shape, 1) for shape > 0 (Marsaglia and Tsang; shape < 1 boosted).
  double gamma(double shape) noexcept {
    if (shape < 1.0) return gamma(shape + 1.0) * std::pow(uniform(), 1.0 / shape);
    const double d = shape - 1.0 / 3.0;
    const double c = 1.0 / std::sqrt(9.0 * d);
    for (;;) {
      double x, v;
      do {
        x = normal();
        v = 1.0 + c * x;
      } while (v <= 0.0);
      v = v * v * v;
      const double u = uniform();
      if (std::log(u) < 0.5 * x * x + d - d * v + d * std::log(v)) return d * v;
    }
  }

  // Beta(a, b) for a, b > 0.
  double beta(double a, double b) noexcept {
    const double x = gamma(a);
    return x / (x + gamma(b));
  }

 private:
  static std::uint64_t mix(std::uint64_t z) noexcept {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }

  std::uint64_t state_;
};

}  // namespace fastroute
