// Cholesky: the small dense linear algebra of the linear bandits, on
// row-major d x d matrices held in std::vector<double>. Only the lower
// triangle of a factor is read or written. Not thread-safe on one matrix;
// nothing allocates except where a vector is returned.
#pragma once

#include <cmath>
#include <cstddef>
#include <vector>

namespace fastroute::cholesky {

// Factors the symmetric positive definite `a` into `lower` (a = L L^T).
// Returns false (lower unspecified) when `a` is not numerically positive
// definite.
inline bool factor(const std::vector<double>& a, std::vector<double>& lower, std::size_t d) {
  lower.assign(d * d, 0.0);
  for (std::size_t i = 0; i < d; ++i) {
    for (std::size_t j = 0; j <= i; ++j) {
      double sum = a[i * d + j];
      for (std::size_t k = 0; k < j; ++k) sum -= lower[i * d + k] * lower[j * d + k];
      if (i == j) {
        if (!(sum > 0.0) || !std::isfinite(sum)) return false;
        lower[i * d + i] = std::sqrt(sum);
      } else {
        lower[i * d + j] = sum / lower[j * d + j];
      }
    }
  }
  return true;
}

// Updates `lower` in place to the factor of L L^T + x x^T (O(d^2)); `x` is
// overwritten. Always succeeds: adding x x^T keeps a positive definite matrix so.
inline void add_outer(std::vector<double>& lower, double* x, std::size_t d) {
  for (std::size_t k = 0; k < d; ++k) {
    const double diagonal = lower[k * d + k];
    const double r = std::hypot(diagonal, x[k]);
    const double c = r / diagonal;
    const double s = x[k] / diagonal;
    lower[k * d + k] = r;
    for (std::size_t i = k + 1; i < d; ++i) {
      lower[i * d + k] = (lower[i * d + k] + s * x[i]) / c;
      x[i] = c * x[i] - s * lower[i * d + k];
    }
  }
}

// Solves L y = x (forward substitution) into y; y may alias x.
inline void solve_lower(const double* lower, const double* x, double* y, std::size_t d) {
  for (std::size_t i = 0; i < d; ++i) {
    double sum = x[i];
    for (std::size_t k = 0; k < i; ++k) sum -= lower[i * d + k] * y[k];
    y[i] = sum / lower[i * d + i];
  }
}

// Solves L^T y = x (back substitution) into y; y may alias x.
inline void solve_upper(const double* lower, const double* x, double* y, std::size_t d) {
  for (std::size_t i = d; i-- > 0;) {
    double sum = x[i];
    for (std::size_t k = i + 1; k < d; ++k) sum -= lower[k * d + i] * y[k];
    y[i] = sum / lower[i * d + i];
  }
}

}  // namespace fastroute::cholesky
