// Linear scorer tests for sanitizer builds: scores against a naive sum,
// NaN dense values as the mean, out-of-range sparse indices, size checks,
// CSR batches, and many threads scoring with one scorer (TSan).
#include <cmath>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "check.hpp"
#include "errors.hpp"
#include "linear.hpp"
#include "ngrams.hpp"

using namespace fastroute;

namespace {

constexpr std::size_t kModels = 3, kDense = 2, kSparse = 1024;

LinearWeights random_weights(std::mt19937& rng) {
  std::normal_distribution<float> normal;
  LinearWeights w;
  w.models = kModels, w.dense = kDense, w.sparse = kSparse;
  for (std::size_t i = 0; i < kDense * kModels; ++i) w.dense_weights.push_back(normal(rng));
  w.dense_mean = {1.0f, -2.0f};
  w.dense_scale = {2.0f, 0.5f};
  for (std::size_t i = 0; i < kSparse * kModels; ++i) w.sparse_weights.push_back(normal(rng));
  for (std::size_t m = 0; m < kModels; ++m) w.bias.push_back(normal(rng));
  return w;
}

double naive(const LinearWeights& w, const float* dense, const std::vector<std::int32_t>& idx,
             const std::vector<double>& val, std::size_t m) {
  double sum = w.bias[m];
  for (std::size_t j = 0; j < w.dense; ++j) {
    if (!std::isnan(dense[j])) sum += (dense[j] - w.dense_mean[j]) / w.dense_scale[j] * w.dense_weights[j * w.models + m];
  }
  for (std::size_t i = 0; i < idx.size(); ++i) sum += val[i] * w.sparse_weights[idx[i] * w.models + m];
  return sum;
}

void scores_equal_a_naive_sum_and_nan_is_the_mean() {
  std::mt19937 rng(7);
  const LinearWeights w = random_weights(rng);
  const LinearScorer scorer(w);
  const NgramHasher hasher([] {
    NgramOptions o;
    o.n_features = kSparse;
    o.max_n = 2;
    return o;
  }());
  SparseRows row;
  hasher.hash_into("which model should answer this maths question about primes", row);
  const std::vector<std::vector<float>> dense_rows{{3.0f, 1.0f}, {NAN, 1.0f}};
  for (const std::vector<float>& copy : dense_rows) {
    float scores[kModels];
    const std::size_t best = scorer.score(copy.data(), row.indices, row.values, scores);
    std::size_t expected_best = 0;
    for (std::size_t m = 0; m < kModels; ++m) {
      const double expected = naive(w, copy.data(), row.indices, row.values, m);
      CHECK(std::fabs(scores[m] - expected) < 1e-4);
      if (expected > naive(w, copy.data(), row.indices, row.values, expected_best)) expected_best = m;
    }
    CHECK(best == expected_best);
  }
}

void bad_indices_and_sizes_throw() {
  std::mt19937 rng(1);
  const LinearScorer scorer(random_weights(rng));
  const float dense[kDense] = {0, 0};
  float scores[kModels];
  for (std::int32_t bad : {-1, static_cast<std::int32_t>(kSparse)}) {
    const std::vector<std::int32_t> idx{3, bad};
    const std::vector<double> val{1.0, 1.0};
    bool threw = false;
    try {
      scorer.score(dense, idx, val, scores);
    } catch (const InvalidInput&) {
      threw = true;
    }
    CHECK(threw);
  }
  LinearWeights short_bias = random_weights(rng);
  short_bias.bias.pop_back();
  LinearWeights bad_scale = random_weights(rng);
  bad_scale.dense_scale[0] = 0;
  LinearWeights infinite = random_weights(rng);
  infinite.sparse_weights[5] = INFINITY;
  for (LinearWeights* w : {&short_bias, &bad_scale, &infinite}) {
    bool threw = false;
    try {
      LinearScorer s(std::move(*w));
    } catch (const InvalidInput&) {
      threw = true;
    }
    CHECK(threw);
  }
}

void batches_and_threads_agree_with_single_rows() {
  std::mt19937 rng(3);
  const LinearScorer scorer(random_weights(rng));
  NgramOptions o;
  o.n_features = kSparse;
  o.unit = NgramUnit::kCharWb;
  o.min_n = 2;
  o.max_n = 4;
  const NgramHasher hasher(o);
  std::vector<std::string> texts;
  for (int i = 0; i < 300; ++i) texts.push_back("prompt " + std::to_string(i * 7919) + " about topic " + std::to_string(i % 13));
  const std::vector<std::string_view> views(texts.begin(), texts.end());
  const SparseRows rows = hasher.hash_batch(views, 2);
  std::vector<float> dense(texts.size() * kDense, 0.5f), scores(texts.size() * kModels);
  std::vector<std::int32_t> best(texts.size());
  scorer.score_batch(dense.data(), texts.size(), rows.indptr.data(), rows.indices.data(), rows.values.data(),
                     scores.data(), best.data());
  std::vector<std::jthread> threads;
  std::vector<int> mismatches(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (std::size_t r = 0; r < texts.size(); ++r) {
        const auto b = static_cast<std::size_t>(rows.indptr[r]), e = static_cast<std::size_t>(rows.indptr[r + 1]);
        float one[kModels];
        const std::size_t chosen = scorer.score(dense.data() + r * kDense, std::span(rows.indices.data() + b, e - b),
                                                std::span(rows.values.data() + b, e - b), one);
        mismatches[t] += chosen != static_cast<std::size_t>(best[r]) || one[0] != scores[r * kModels];
      }
    });
  }
  threads.clear();  // joined
  for (int m : mismatches) CHECK(m == 0);
}

}  // namespace

int main() {
  RUN(scores_equal_a_naive_sum_and_nan_is_the_mean);
  RUN(bad_indices_and_sizes_throw);
  RUN(batches_and_threads_agree_with_single_rows);
  return TEST_MAIN_RESULT();
}
