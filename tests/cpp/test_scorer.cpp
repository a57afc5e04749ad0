// Scorer tests for sanitizer builds (-fsanitize=address,undefined): random
// forests against a naive reference walk, every tree walk kernel this CPU
// runs (scalar, AVX2, AVX-512) forced in turn against the same reference,
// rule tables, thresholds, tails of every length, NaN rows, threads,
// rejected arrays, and the route plans of the native request path.
#include <atomic>
#include <cmath>
#include <cstdio>
#include <limits>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "errors.hpp"
#include "features.hpp"
#include "scorer.hpp"
#include "tree_walk.hpp"

using namespace fastroute;

namespace {

int failures = 0;
void check(bool ok, const char* what) {
  if (!ok) {
    std::printf("FAIL: %s\n", what);
    ++failures;
  }
}

// Appends a node with no children and k zero leaf values; the caller fills it in.
void append_leaf(ForestArrays& a, std::size_t k) {
  a.feature.push_back(0);
  a.threshold.push_back(0);
  a.left.push_back(-1);
  a.right.push_back(-1);
  a.missing_left.push_back(1);
  a.values.insert(a.values.end(), k, 0);
}

// A random tree of the given depth over nf features, in sklearn's arrays
// (children after parents), appended to `a`.
void add_random_tree(ForestArrays& a, std::mt19937& rng, std::size_t nf, std::size_t k, int depth) {
  const auto begin = static_cast<std::int32_t>(a.feature.size());
  std::normal_distribution<double> normal;
  std::uniform_int_distribution<int> feature(0, static_cast<int>(nf) - 1);
  std::vector<std::pair<std::int32_t, int>> stack{{begin, 0}};
  append_leaf(a, k);
  while (!stack.empty()) {
    auto [node, level] = stack.back();
    stack.pop_back();
    if (level == depth || rng() % 5 == 0) {
      for (std::size_t j = 0; j < k; ++j) a.values[node * k + j] = normal(rng);
      continue;
    }
    a.feature[node] = feature(rng);
    a.threshold[node] = normal(rng);
    a.missing_left[node] = rng() % 2;
    for (int side = 0; side < 2; ++side) {
      const auto child = static_cast<std::int32_t>(a.feature.size());
      (side == 0 ? a.left : a.right)[node] = child;
      append_leaf(a, k);
      stack.push_back({child, level + 1});
    }
  }
  a.tree_begin.push_back(static_cast<std::uint32_t>(a.feature.size()));
}

// The leaf (node id) of tree t that sklearn's rule reaches for one row.
std::uint32_t reference_leaf(const ForestArrays& a, const float* row, std::size_t t) {
  std::int32_t node = static_cast<std::int32_t>(a.tree_begin[t]);
  while (a.left[node] >= 0) {
    const float v = row[a.feature[node]];
    const bool left = std::isnan(v) ? a.missing_left[node] != 0 : static_cast<double>(v) <= a.threshold[node];
    node = left ? a.left[node] : a.right[node];
  }
  return static_cast<std::uint32_t>(node);
}

// Reference: walk each tree with sklearn's rule, sum, divide, argmax over the
// allowed models (all when `allowed` is null; kNoModel when none is).
std::int32_t reference(const ForestArrays& a, const float* row, std::size_t k, const std::uint8_t* allowed = nullptr) {
  std::vector<double> sums(k, 0.0);
  for (std::size_t t = 0; t + 1 < a.tree_begin.size(); ++t) {
    const std::uint32_t node = reference_leaf(a, row, t);
    for (std::size_t j = 0; j < k; ++j) sums[j] += a.values[node * k + j];
  }
  std::int32_t best = kNoModel;
  for (std::size_t j = 0; j < k; ++j) {
    sums[j] /= a.divisor[j];
    if ((allowed == nullptr || allowed[j]) && (best == kNoModel || sums[j] > sums[best])) best = static_cast<std::int32_t>(j);
  }
  return best;
}

void test_forests(std::size_t nf) {
  std::mt19937 rng(7);
  const std::size_t k = 3;
  for (int depth : {0, 1, 3, 8, 14}) {
    for (int trees : {1, 4}) {
      ForestArrays a;
      a.tree_begin.push_back(0);
      for (int t = 0; t < trees; ++t) add_random_tree(a, rng, nf, k, depth);
      a.divisor.assign(k, trees);
      ForestScorer forest(nf, k, a);
      for (std::size_t n : {std::size_t{1}, std::size_t{15}, std::size_t{17}, std::size_t{300}, std::size_t{40000}}) {
        std::vector<float> rows(n * nf);
        std::normal_distribution<float> normal;
        for (float& v : rows) v = rng() % 10 == 0 ? std::numeric_limits<float>::quiet_NaN() : normal(rng);
        std::vector<std::int32_t> model(n), reason(n);
        std::vector<float> score(n), margin(n);
        forest.score_batch(rows.data(), n, {model.data(), score.data(), margin.data(), reason.data()}, 3);
        bool same = true;
        for (std::size_t i = 0; i < n; ++i) same = same && model[i] == reference(a, &rows[i * nf], k);
        check(same, "forest matches the reference walk");
        // Per modality (column 0): group 0 allows models 0 and 2, group 1 only
        // model 1, group 2 none; other codes (NaN, 3) allow none either.
        const std::vector<std::uint8_t> flags{1, 0, 1, /**/ 0, 1, 0, /**/ 0, 0, 0};
        const ModelMask mask(flags, 3, k);
        for (std::size_t i = 0; i < n; ++i) rows[i * nf] = static_cast<float>(i % 5);
        forest.score_batch(rows.data(), n, {model.data(), score.data(), margin.data(), reason.data()}, 3, mask);
        bool masked_same = true;
        for (std::size_t i = 0; i < n; ++i) {
          const std::uint8_t* allowed = i % 5 < 3 ? &flags[(i % 5) * k] : &flags[2 * k];
          masked_same = masked_same && model[i] == reference(a, &rows[i * nf], k, allowed);
        }
        check(masked_same, "masked forest picks the best allowed model, kNoModel when none is");
      }
    }
  }
}

// Every kernel, forced, reaches the reference leaf: rows of every tail length
// around the vector widths, NaN (both missing directions), +-Inf and values
// equal to a threshold (x <= t goes left), trees from a lone leaf to deeper
// than the dense layout. The model-only path (predict) writes in place.
void test_tree_walks(std::size_t nf) {
  std::mt19937 rng(11);
  const std::size_t k = 2;
  const float inf = std::numeric_limits<float>::infinity();
  for (int depth : {0, 1, 4, 5, 6, 8, 10, 12}) {
    ForestArrays a;
    a.tree_begin.push_back(0);
    add_random_tree(a, rng, nf, k, depth);
    a.divisor.assign(k, 1);
    ForestScorer tree(nf, k, a);
    for (std::size_t n : {std::size_t{1}, std::size_t{7}, std::size_t{16}, std::size_t{31}, std::size_t{33},
                          std::size_t{1000}}) {
      std::vector<float> rows(n * nf);
      std::normal_distribution<float> normal;
      for (float& v : rows) {
        const unsigned kind = rng() % 20;
        v = kind == 0 ? std::numeric_limits<float>::quiet_NaN() : kind == 1 ? inf : kind == 2 ? -inf
            : kind == 3 ? static_cast<float>(a.threshold[rng() % a.threshold.size()]) : normal(rng);
      }
      for (std::size_t code = 0; code < kTreeWalkNames.size(); ++code) {
        const auto walk = static_cast<TreeWalk>(code);
        if (!tree_walk_supported(walk)) continue;
        std::vector<std::uint32_t> leaf(n);
        tree.leaves(rows.data(), n, 0, walk, leaf.data());
        bool same = true;
        for (std::size_t i = 0; i < n; ++i) same = same && leaf[i] == reference_leaf(a, &rows[i * nf], 0);
        if (!same) std::printf("  walk %s, depth %d, %zu rows\n", kTreeWalkNames[code].data(), depth, n);
        check(same, "every tree walk kernel reaches the reference leaf");
      }
      std::vector<std::int32_t> model(n);
      tree.score_rows(rows.data(), n, {model.data(), nullptr, nullptr, nullptr});
      bool same = true;
      for (std::size_t i = 0; i < n; ++i) same = same && model[i] == reference(a, &rows[i * nf], k);
      check(same, "the model-only path matches the reference");
    }
  }
  check(tree_walk_supported(best_tree_walk()), "the detected kernel is supported");
}

void test_rules_and_threshold() {
  // rule 0: f0 > 1 and f1 != 2 -> model 1; rule 1: 0 <= f2 < 5 -> model 2; default 0
  RuleScorer rules(3, 3,
                   {{0, CompareOp::kGreater, 1}, {1, CompareOp::kNotEqual, 2},
                    {2, CompareOp::kGreaterEqual, 0}, {2, CompareOp::kLess, 5}},
                   {0, 2, 4}, {1, 2}, 0);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float rows[] = {2, 0, 9, /**/ 2, 2, 1, /**/ 0, 0, nan, /**/ 2, nan, 9};
  std::int32_t model[4], reason[4];
  rules.score_batch(rows, 4, {model, nullptr, nullptr, reason}, 1);
  check(model[0] == 1 && model[1] == 2 && model[2] == 0 && model[3] == 0, "rules: first match, NaN fails");
  check(reason[2] == -1, "rules: default has reason -1");
  // Only models 0 and 2 allowed: rule 0 (model 1) is skipped, rule 1 may still match.
  const ModelMask no_model_1({1, 0, 1}, 1, 3);
  rules.score_batch(rows, 4, {model, nullptr, nullptr, reason}, 1, no_model_1);
  check(model[0] == 0 && model[1] == 2 && model[2] == 0 && model[3] == 0, "rules: a masked rule is skipped");
  const ModelMask only_model_1({0, 1, 0}, 1, 3);
  rules.score_batch(rows, 4, {model, nullptr, nullptr, reason}, 1, only_model_1);
  check(model[0] == 1 && model[1] == kNoModel && model[2] == kNoModel, "rules: a masked default gives kNoModel");

  ThresholdScorer threshold(1, 0, {0.5f, 1.5f}, 0);
  const float scores[] = {0.5f, 0.6f, 2.0f, nan};
  threshold.score_batch(scores, 4, {model, nullptr, nullptr, nullptr}, 1);
  check(model[0] == 0 && model[1] == 1 && model[2] == 2 && model[3] == 0, "threshold: strictly above cuts");
  const ModelMask not_model_1({1, 0, 1}, 1, 3);
  threshold.score_batch(scores, 4, {model, nullptr, nullptr, nullptr}, 1, not_model_1);
  check(model[0] == 0 && model[1] == 2 && model[2] == 2 && model[3] == 0, "threshold: a masked model gives way upward");
  const ModelMask only_model_0({1, 0, 0}, 1, 3);
  threshold.score_batch(scores, 4, {model, nullptr, nullptr, nullptr}, 1, only_model_0);
  check(model[1] == 0 && model[2] == 0, "threshold: then downward");
  bool thrown = false;
  try {
    ModelMask wrong_size({1, 0}, 1, 3);
  } catch (const InvalidInput&) {
    thrown = true;
  }
  check(thrown, "a mask of the wrong size is rejected");
}

template <class Make>
bool plan_rejected(Make&& make) {
  try {
    make();
  } catch (const InvalidInput&) {
    return true;
  }
  return false;
}

// RoutePlan: a table by modality code, and a scorer under a per-modality mask,
// read by many threads at once (TSan: immutable, no race).
void test_route_plans() {
  const RoutePlan table({1, kNoModel, 0}, 2);
  const float row[] = {0, 0, 0};
  check(table.choose(row, 0).model == 1 && table.choose(row, 0).reason == 0, "plan: a table's model and reason");
  check(std::isnan(table.choose(row, 0).score), "plan: a table gives no score");
  check(table.choose(row, 1).model == kNoModel && table.choose(row, 7).model == kNoModel,
        "plan: a modality without a model, or unknown, gets kNoModel");
  check(plan_rejected([] { RoutePlan({2}, 2); }) && plan_rejected([] { RoutePlan({-2}, 2); }),
        "plan: a table entry out of range is rejected");

  // Threshold on column 1; modality code in column 0: modality 0 may use models 0 and 2, modality 1 only 1.
  auto threshold = std::make_shared<const ThresholdScorer>(2, 1, std::vector<float>{0.5f, 1.5f}, 0);
  auto mask = std::make_shared<const ModelMask>(std::vector<std::uint8_t>{1, 0, 1, 0, 1, 0}, 2, 3);
  const RoutePlan scored(threshold, mask);
  check(scored.num_models() == 3, "plan: the scorer's models");
  const float tabular_mid[] = {0, 1.0f}, other_mid[] = {1, 1.0f}, unknown[] = {5, 1.0f};
  check(scored.choose(tabular_mid, 0).model == 2, "plan: a masked model gives way as the scorer says");
  check(scored.choose(other_mid, 1).model == 1, "plan: each modality its own mask");
  check(scored.choose(unknown, 5).model == kNoModel, "plan: an unknown modality may use no model");
  check(plan_rejected([] { RoutePlan(nullptr, nullptr); }), "plan: a null scorer is rejected");
  check(plan_rejected([&] { RoutePlan(threshold, std::make_shared<const ModelMask>(std::vector<std::uint8_t>{1, 1}, 1, 2)); }),
        "plan: a mask over another number of models is rejected");

  std::vector<std::thread> readers;
  std::atomic<int> wrong{0};
  for (int t = 0; t < 4; ++t) {
    readers.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        if (scored.choose(tabular_mid, 0).model != 2 || table.choose(row, 0).model != 1) ++wrong;
      }
    });
  }
  for (auto& reader : readers) reader.join();
  check(wrong == 0, "plan: concurrent readers agree");
}

bool forest_rejected(const ForestArrays& arrays) {
  try {
    ForestScorer forest(1, 1, arrays);
  } catch (const InvalidInput&) {
    return true;
  }
  return false;
}

// Three one-leaf trees, each valid on its own: nodes 0, 1, 2.
ForestArrays three_leaves() { return {{0, 0, 0}, {0, 0, 0}, {-1, -1, -1}, {-1, -1, -1}, {1, 1, 1}, {1, 1, 1}, {0, 1, 2, 3}, {3}}; }

void test_rejected_arrays() {
  ForestArrays cyclic{{0}, {0.0}, {0}, {0}, {1}, {1.0}, {0, 1}, {1.0}};
  check(forest_rejected(cyclic), "a node that is its own child is rejected");
  check(!forest_rejected(three_leaves()), "three one-leaf trees are accepted");
  ForestArrays past_the_end = three_leaves();
  past_the_end.tree_begin = {0, 5000000, 3};  // first and last entries look right
  check(forest_rejected(past_the_end), "a tree_begin entry past the node count is rejected");
  ForestArrays decreasing = three_leaves();
  decreasing.tree_begin = {0, 2, 1, 3};
  check(forest_rejected(decreasing), "a decreasing tree_begin is rejected");
  // Root 0 splits into 1 and 2; node 1 splits into 2 and 3: node 2 has two parents.
  ForestArrays shared_child{{0, 0, 0, 0}, {0.5, 0.5, 0, 0}, {1, 2, -1, -1}, {2, 3, -1, -1},
                            {1, 1, 1, 1}, {0, 0, 1, 2},     {0, 4},       {1.0}};
  check(forest_rejected(shared_child), "a node with two parents is rejected");
  // Root 0 is a leaf; node 1 follows in the same tree with no parent.
  ForestArrays orphan{{0, 0}, {0, 0}, {-1, -1}, {-1, -1}, {1, 1}, {1, 2}, {0, 2}, {1.0}};
  check(forest_rejected(orphan), "a node no parent reaches is rejected");
  bool thrown = false;
  try {
    ThresholdScorer threshold(1, 0, {1.0f, 1.0f}, 0);
  } catch (const InvalidInput&) {
    thrown = true;
  }
  check(thrown, "equal cuts are rejected");
}

}  // namespace

int main() {
  test_forests(5);
  test_forests(kNumFeatures);  // the walk specialised for the schema's width
  test_tree_walks(5);
  test_tree_walks(kNumFeatures);
  test_rules_and_threshold();
  test_route_plans();
  test_rejected_arrays();
  std::printf("%s\n", failures ? "scorer tests FAILED" : "scorer tests passed");
  return failures ? 1 : 0;
}
