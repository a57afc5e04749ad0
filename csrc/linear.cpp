#include "linear.hpp"

#include <cmath>
#include <string>

#include "errors.hpp"

namespace fastroute {
namespace {

void check_size(const std::vector<float>& values, std::size_t expected, const char* name) {
  if (values.size() != expected) {
    throw InvalidInput(std::string(name) + " has " + std::to_string(values.size()) + " values, expected " +
                       std::to_string(expected));
  }
  for (float v : values) {
    if (!std::isfinite(v)) throw InvalidInput(std::string(name) + " holds a non-finite value");
  }
}

}  // namespace

LinearScorer::LinearScorer(LinearWeights weights) : w_(std::move(weights)) {
  if (w_.models == 0) throw InvalidInput("a linear scorer needs at least one model");
  check_size(w_.dense_weights, w_.dense * w_.models, "dense_weights");
  check_size(w_.dense_mean, w_.dense, "dense_mean");
  check_size(w_.dense_scale, w_.dense, "dense_scale");
  check_size(w_.sparse_weights, w_.sparse * w_.models, "sparse_weights");
  check_size(w_.bias, w_.models, "bias");
  for (float scale : w_.dense_scale) {
    if (!(scale > 0)) throw InvalidInput("dense_scale must be > 0");
  }
}

std::size_t LinearScorer::score(const float* dense, std::span<const std::int32_t> indices,
                                std::span<const double> values, float* scores) const {
  constexpr std::size_t kStackModels = 64;
  double stack[kStackModels];
  std::vector<double> heap;  // only for more than kStackModels models
  double* sums = stack;
  if (w_.models > kStackModels) {
    heap.resize(w_.models);
    sums = heap.data();
  }
  for (std::size_t m = 0; m < w_.models; ++m) sums[m] = w_.bias[m];
  for (std::size_t j = 0; j < w_.dense; ++j) {
    const float x = dense[j];
    if (std::isnan(x)) continue;  // the training mean: contributes 0
    const double z = (static_cast<double>(x) - w_.dense_mean[j]) / w_.dense_scale[j];
    const float* row = w_.dense_weights.data() + j * w_.models;
    for (std::size_t m = 0; m < w_.models; ++m) sums[m] += z * row[m];
  }
  for (std::size_t i = 0; i < indices.size(); ++i) {
    const auto column = static_cast<std::size_t>(static_cast<std::uint32_t>(indices[i]));
    if (indices[i] < 0 || column >= w_.sparse) {
      throw InvalidInput("sparse index " + std::to_string(indices[i]) + " outside [0, " + std::to_string(w_.sparse) + ")");
    }
    const float* row = w_.sparse_weights.data() + column * w_.models;
    for (std::size_t m = 0; m < w_.models; ++m) sums[m] += values[i] * row[m];
  }
  std::size_t best = 0;
  for (std::size_t m = 0; m < w_.models; ++m) {
    scores[m] = static_cast<float>(sums[m]);
    if (sums[m] > sums[best]) best = m;
  }
  return best;
}

void LinearScorer::score_batch(const float* dense, std::size_t n, const std::int64_t* indptr,
                               const std::int32_t* indices, const double* values, float* scores,
                               std::int32_t* best) const {
  for (std::size_t r = 0; r < n; ++r) {
    const auto begin = static_cast<std::size_t>(indptr[r]), end = static_cast<std::size_t>(indptr[r + 1]);
    try {
      best[r] = static_cast<std::int32_t>(score(dense == nullptr ? nullptr : dense + r * w_.dense,
                                                std::span(indices + begin, end - begin),
                                                std::span(values + begin, end - begin), scores + r * w_.models));
    } catch (const InvalidInput& e) {
      throw InvalidInput("row " + std::to_string(r) + ": " + e.what());
    }
  }
}

}  // namespace fastroute
