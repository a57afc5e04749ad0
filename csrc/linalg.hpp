// Linalg: the small dense linear algebra of the linear bandits, on row-major
// d x d matrices held in std::vector<double> or raw arrays. Loops are written
// as row updates (y += a * row) so the compiler vectorises them without
// reassociating sums. Not thread-safe on one matrix; nothing allocates except
// where a vector is resized.
#pragma once

#include <cmath>
#include <cstddef>
#include <vector>

namespace fastroute::linalg {

// y = m x for a symmetric m (so m's rows are its columns): y += x[k] * row k.
inline void symmetric_times(const double* m, const double* x, double* y, std::size_t d) {
  for (std::size_t i = 0; i < d; ++i) y[i] = 0.0;
  for (std::size_t k = 0; k < d; ++k) {
    const double scale = x[k];
    const double* row = m + k * d;
    for (std::size_t i = 0; i < d; ++i) y[i] += scale * row[i];
  }
}

// a . b with four independent partial sums (a fixed order: deterministic, and
// four times the throughput of one dependent chain).
inline double dot(const double* a, const double* b, std::size_t d) {
  double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
  std::size_t i = 0;
  for (; i + 4 <= d; i += 4) {
    s0 += a[i] * b[i];
    s1 += a[i + 1] * b[i + 1];
    s2 += a[i + 2] * b[i + 2];
    s3 += a[i + 3] * b[i + 3];
  }
  for (; i < d; ++i) s0 += a[i] * b[i];
  return (s0 + s1) + (s2 + s3);
}

// x^T m x for a symmetric m, reading only its lower triangle (d^2 / 2 products).
inline double quadratic_form(const double* m, const double* x, std::size_t d) {
  double sum = 0.0;
  for (std::size_t i = 0; i < d; ++i) {
    const double* row = m + i * d;
    sum += x[i] * (row[i] * x[i] + 2.0 * dot(row, x, i));
  }
  return sum;
}

// Factors the symmetric positive definite `a` into `lower` (a = L L^T).
// Returns false (lower unspecified) when `a` is not numerically positive definite.
inline bool cholesky(const std::vector<double>& a, std::vector<double>& lower, std::size_t d) {
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

// inverse = a^-1 for a symmetric positive definite `a` (through its Cholesky
// factor, O(d^3)). Returns false when `a` is not numerically positive definite.
inline bool inverse_spd(const std::vector<double>& a, std::vector<double>& inverse, std::size_t d) {
  std::vector<double> lower;
  if (!cholesky(a, lower, d)) return false;
  // t = L^-1 (lower triangular), row by row: t[i][j] = (e_ij - sum_k L[i][k] t[k][j]) / L[i][i].
  std::vector<double> t(d * d, 0.0);
  for (std::size_t i = 0; i < d; ++i) {
    double* row = t.data() + i * d;
    row[i] = 1.0;
    for (std::size_t k = 0; k < i; ++k) {
      const double scale = lower[i * d + k];
      const double* previous = t.data() + k * d;
      for (std::size_t j = 0; j <= k; ++j) row[j] -= scale * previous[j];
    }
    const double diagonal = lower[i * d + i];
    for (std::size_t j = 0; j <= i; ++j) row[j] /= diagonal;
  }
  // a^-1 = t^T t: a^-1[i][j] = sum_k t[k][i] t[k][j], accumulated row k at a time.
  inverse.assign(d * d, 0.0);
  for (std::size_t k = 0; k < d; ++k) {
    const double* row = t.data() + k * d;
    for (std::size_t i = 0; i <= k; ++i) {
      const double scale = row[i];
      double* out = inverse.data() + i * d;
      for (std::size_t j = 0; j <= k; ++j) out[j] += scale * row[j];
    }
  }
  return true;
}

}  // namespace fastroute::linalg
