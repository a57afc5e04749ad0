#include "scorer.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <thread>
#include <utility>

#include "errors.hpp"
#include "features.hpp"

namespace fastroute {

namespace {

[[noreturn]] void invalid(const std::string& what) { throw InvalidInput("policy arrays: " + what); }

// Best and runner-up of k scores; ties go to the lowest index.
struct Ranked {
  std::int32_t best;
  double score;
  double margin;
};

// Among the allowed models; best is kNoModel (score and margin NaN) when none is.
Ranked rank_scores(const double* scores, std::size_t k, RowMask allowed) {
  std::int32_t best = kNoModel;
  for (std::size_t j = 0; j < k; ++j) {
    const auto model = static_cast<std::int32_t>(j);
    if (allowed.allows(model) && (best == kNoModel || scores[j] > scores[best])) best = model;
  }
  if (best == kNoModel) {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    return {kNoModel, nan, nan};
  }
  double second = -std::numeric_limits<double>::infinity();
  for (std::size_t j = 0; j < k; ++j) {
    const auto model = static_cast<std::int32_t>(j);
    if (model != best && allowed.allows(model)) second = std::max(second, scores[j]);
  }
  const double margin = std::isinf(second) ? 0.0 : scores[best] - second;
  return {best, scores[best], margin};
}

// Largest float32 f with (x <= f) == (x <= threshold) for every float32 x.
float float32_threshold(double threshold) {
  if (threshold >= static_cast<double>(std::numeric_limits<float>::max())) {
    return threshold == static_cast<double>(std::numeric_limits<float>::max())
               ? std::numeric_limits<float>::max()
               : std::numeric_limits<float>::infinity();
  }
  if (threshold < -static_cast<double>(std::numeric_limits<float>::max())) {
    return -std::numeric_limits<float>::infinity();
  }
  float f = static_cast<float>(threshold);
  if (static_cast<double>(f) > threshold) f = std::nextafter(f, -std::numeric_limits<float>::infinity());
  return f;
}

bool holds(const Condition& c, float v) {
  switch (c.op) {
    case CompareOp::kLess: return v < c.value;
    case CompareOp::kLessEqual: return v <= c.value;
    case CompareOp::kGreater: return v > c.value;
    case CompareOp::kGreaterEqual: return v >= c.value;
    case CompareOp::kEqual: return v == c.value;
    case CompareOp::kNotEqual: return v == v && v != c.value;
  }
  return false;
}

// Tree t owns nodes [tree_begin[t], tree_begin[t+1]): every range must be
// non-empty and inside the node arrays before any node is read.
void check_tree_begin(const std::vector<std::uint32_t>& tree_begin, std::size_t n_nodes) {
  if (tree_begin.size() < 2 || tree_begin.front() != 0)
    invalid("tree_begin must start at 0 and hold at least one tree");
  for (std::size_t t = 0; t + 1 < tree_begin.size(); ++t) {
    if (tree_begin[t + 1] <= tree_begin[t] || tree_begin[t + 1] > n_nodes)
      invalid("tree_begin[" + std::to_string(t + 1) + "] = " + std::to_string(tree_begin[t + 1]) +
              " must exceed tree_begin[" + std::to_string(t) + "] = " + std::to_string(tree_begin[t]) +
              " and be at most the node count " + std::to_string(n_nodes));
  }
  if (tree_begin.back() != n_nodes)
    invalid("tree_begin ends at " + std::to_string(tree_begin.back()) + ", not at the node count " +
            std::to_string(n_nodes));
}

}  // namespace

ModelMask::ModelMask(std::vector<std::uint8_t> flags, std::size_t groups, std::size_t num_models)
    : flags_(std::move(flags)), groups_(groups), num_models_(num_models) {
  if (groups == 0 || num_models == 0 || flags_.size() != groups * num_models)
    throw InvalidInput("a model mask needs groups x models flags, got " + std::to_string(flags_.size()) +
                       " flags for " + std::to_string(groups) + " groups of " + std::to_string(num_models));
  all_.resize(groups);
  for (std::size_t g = 0; g < groups; ++g) {
    const auto* group = flags_.data() + g * num_models;
    all_[g] = std::all_of(group, group + num_models, [](std::uint8_t flag) { return flag != 0; });
  }
}

std::size_t ModelMask::group_of(const float* row) const {
  if (groups_ == 1) return 0;
  const float code = row[kModality];
  // Also false for NaN: a row of no known modality may use no model.
  if (!(code >= 0.0f && code < static_cast<float>(groups_))) return kNoGroup;
  return static_cast<std::size_t>(code);
}

RowMask ModelMask::group(std::size_t g) const {
  if (g == kNoGroup) return {nullptr, false};
  return {flags_.data() + g * num_models_, all_[g] != 0};
}

Scorer::Scorer(std::size_t num_features, std::size_t num_models)
    : num_features_(num_features), num_models_(num_models) {
  if (num_features == 0) invalid("a policy needs at least one feature");
  if (num_models == 0) invalid("a policy needs at least one model");
}

void Scorer::score_batch(const float* rows, std::size_t n, ScoreOutput out, unsigned threads,
                         const ModelMask& mask) const {
  const std::size_t work = n * work_per_row();
  if (work < kParallelMinWork || threads == 1) {
    score_rows(rows, n, out, mask);
    return;
  }
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  // Each thread gets at least half the threshold's work.
  threads = static_cast<unsigned>(std::clamp<std::size_t>(work / (kParallelMinWork / 2), 1, threads));
  std::size_t chunk = (n + threads - 1) / threads;
  std::vector<std::jthread> workers;
  workers.reserve(threads - 1);
  for (unsigned t = 1; t < threads; ++t) {
    std::size_t begin = std::min(n, t * chunk);
    std::size_t count = std::min(n, begin + chunk) - begin;
    workers.emplace_back([this, rows, begin, count, out, &mask] {
      score_rows(rows + begin * num_features(), count, out.offset(begin), mask);
    });
  }
  score_rows(rows, std::min(n, chunk), out, mask);
}  // jthreads join here

// ---- rules ----------------------------------------------------------------

RuleScorer::RuleScorer(std::size_t num_features, std::size_t num_models,
                       std::vector<Condition> conditions, std::vector<std::uint32_t> rule_begin,
                       std::vector<std::int32_t> rule_model, std::int32_t default_model)
    : Scorer(num_features, num_models),
      conditions_(std::move(conditions)),
      rule_begin_(std::move(rule_begin)),
      rule_model_(std::move(rule_model)),
      default_model_(default_model) {
  if (rule_begin_.size() != rule_model_.size() + 1) invalid("rule_begin must have rules + 1 entries");
  if (rule_begin_.front() != 0 || rule_begin_.back() != conditions_.size())
    invalid("rule_begin must start at 0 and end at the condition count");
  for (std::size_t r = 0; r < rule_model_.size(); ++r) {
    if (rule_begin_[r] > rule_begin_[r + 1]) invalid("rule_begin must not decrease");
    if (rule_model_[r] < 0 || static_cast<std::size_t>(rule_model_[r]) >= num_models)
      invalid("rule " + std::to_string(r) + " names model " + std::to_string(rule_model_[r]));
  }
  if (default_model_ < 0 || static_cast<std::size_t>(default_model_) >= num_models)
    invalid("default model " + std::to_string(default_model_) + " out of range");
  for (std::size_t i = 0; i < conditions_.size(); ++i) {
    const Condition& c = conditions_[i];
    if (c.feature >= num_features) invalid("condition " + std::to_string(i) + " reads feature " + std::to_string(c.feature));
    if (static_cast<unsigned>(c.op) > static_cast<unsigned>(CompareOp::kNotEqual))
      invalid("condition " + std::to_string(i) + " has an unknown operator");
    if (std::isnan(c.value)) invalid("condition " + std::to_string(i) + " compares with NaN");
  }
}

std::int32_t RuleScorer::first_match(const float* row, RowMask allowed) const {
  for (std::size_t r = 0; r < rule_model_.size(); ++r) {
    if (!allowed.allows(rule_model_[r])) continue;
    bool all = true;
    for (std::uint32_t i = rule_begin_[r]; all && i < rule_begin_[r + 1]; ++i) {
      const Condition& c = conditions_[i];
      all = holds(c, row[c.feature]);
    }
    if (all) return static_cast<std::int32_t>(r);
  }
  return -1;
}

void RuleScorer::score_rows(const float* rows, std::size_t n, ScoreOutput out, const ModelMask& mask) const {
  for (std::size_t i = 0; i < n; ++i) {
    const float* row = rows + i * num_features();
    const RowMask allowed = mask.row(row);
    const std::int32_t rule = first_match(row, allowed);
    if (rule >= 0) {
      out.model[i] = rule_model_[rule];
    } else {
      out.model[i] = allowed.allows(default_model_) ? default_model_ : kNoModel;
    }
    if (out.score) out.score[i] = std::numeric_limits<float>::quiet_NaN();
    if (out.margin) out.margin[i] = std::numeric_limits<float>::quiet_NaN();
    if (out.reason) out.reason[i] = rule;
  }
}

// ---- forests --------------------------------------------------------------

ForestScorer::ForestScorer(std::size_t num_features, std::size_t num_models, const ForestArrays& a)
    : Scorer(num_features, num_models), divisor_(a.divisor) {
  const std::size_t n_nodes = a.feature.size();
  if (a.threshold.size() != n_nodes || a.left.size() != n_nodes || a.right.size() != n_nodes ||
      a.missing_left.size() != n_nodes || a.values.size() != n_nodes * num_models)
    invalid("node arrays differ in length");
  check_tree_begin(a.tree_begin, n_nodes);
  if (divisor_.size() != num_models) invalid("divisor must hold one entry per model");
  for (double d : divisor_) {
    if (!(d > 0) || !std::isfinite(d)) invalid("divisors must be positive and finite");
  }
  if (num_features >= kMissingRight) invalid("too many features");
  nodes_.resize(n_nodes);
  values_.assign(a.values.begin(), a.values.end());
  for (std::size_t t = 0; t + 1 < a.tree_begin.size(); ++t) {
    const std::uint32_t begin = a.tree_begin[t], end = a.tree_begin[t + 1];
    constexpr std::uint32_t kUnreached = std::numeric_limits<std::uint32_t>::max();
    std::vector<std::uint32_t> depth(end - begin, kUnreached);
    depth[0] = 0;
    std::uint32_t max_depth = 0;
    for (std::uint32_t i = begin; i < end; ++i) {
      TreeNode& node = nodes_[i];
      const std::string where = "node " + std::to_string(i) + " (tree " + std::to_string(t) + ")";
      // Parents come first, so an unreached node has no parent at all.
      if (depth[i - begin] == kUnreached) invalid(where + " is not reached from the tree's root");
      if ((a.left[i] < 0) != (a.right[i] < 0)) invalid(where + " has one child");
      if (a.left[i] < 0) {
        node = {0.0f, 0, {i, i}};
        for (std::size_t j = 0; j < num_models; ++j) {
          if (!std::isfinite(a.values[i * num_models + j])) invalid(where + " has a non-finite leaf value");
        }
        continue;
      }
      // Children after their parent inside the same tree: no cycles, and the
      // depth of each node is known when it is reached.
      for (std::int32_t child : {a.left[i], a.right[i]}) {
        if (static_cast<std::uint32_t>(child) <= i || static_cast<std::uint32_t>(child) >= end)
          invalid(where + " has child " + std::to_string(child) + " outside its tree or before it");
        // Two parents would give the child two depths: the walk could stop early.
        if (depth[child - begin] != kUnreached)
          invalid(where + " has child " + std::to_string(child) + ", which already has a parent");
        depth[child - begin] = depth[i - begin] + 1;
        max_depth = std::max(max_depth, depth[child - begin]);
      }
      if (a.feature[i] < 0 || static_cast<std::size_t>(a.feature[i]) >= num_features)
        invalid(where + " splits on feature " + std::to_string(a.feature[i]));
      if (std::isnan(a.threshold[i])) invalid(where + " has a NaN threshold");
      const std::uint32_t missing_right = a.missing_left[i] ? 0 : kMissingRight;
      node = {float32_threshold(a.threshold[i]), static_cast<std::uint32_t>(a.feature[i]) | missing_right,
              {static_cast<std::uint32_t>(a.left[i]), static_cast<std::uint32_t>(a.right[i])}};
    }
    TreeLayout layout{begin, max_depth, max_depth <= kMaxDenseDepth, 0, 0};
    if (layout.dense) {
      layout.dense_begin = static_cast<std::uint32_t>(dense_thresholds_.size());
      layout.leaf_begin = static_cast<std::uint32_t>(dense_leaves_.size());
      dense_thresholds_.resize(dense_thresholds_.size() + (std::size_t{1} << max_depth) - 1);
      dense_columns_.resize(dense_thresholds_.size());
      dense_leaves_.resize(dense_leaves_.size() + (std::size_t{1} << max_depth));
      add_dense(layout, 0, begin, 0);
    }
    trees_.push_back(layout);
  }
  if (trees_.size() == 1) {
    leaf_decisions_.resize(n_nodes);
    std::vector<double> scores(num_models);
    for (std::size_t i = 0; i < n_nodes; ++i) {
      for (std::size_t j = 0; j < num_models; ++j) scores[j] = (0.0 + values_[i * num_models + j]) / divisor_[j];
      const Ranked ranked = rank_scores(scores.data(), num_models, RowMask{nullptr, true});
      leaf_decisions_[i] = {ranked.best, static_cast<float>(ranked.score), static_cast<float>(ranked.margin)};
    }
    if (trees_[0].dense) {
      for (std::uint32_t node : dense_leaves_) dense_leaf_models_.push_back(leaf_decisions_[node].model);
    }
  }
}

void ForestScorer::add_dense(TreeLayout& tree, std::uint32_t slot, std::uint32_t node, std::uint32_t level) {
  if (level == tree.depth) {
    dense_leaves_[tree.leaf_begin + slot - ((1u << level) - 1)] = node;
    return;
  }
  const TreeNode& source = nodes_[node];
  // Below a leaf: always left (no value exceeds +inf; missing values go left).
  const bool leaf = is_leaf(node);
  dense_thresholds_[tree.dense_begin + slot] = leaf ? std::numeric_limits<float>::infinity() : source.threshold;
  dense_columns_[tree.dense_begin + slot] = leaf ? 0 : source.column;
  add_dense(tree, 2 * slot + 1, source.child[0], level + 1);
  add_dense(tree, 2 * slot + 2, source.child[1], level + 1);
}

DenseTree ForestScorer::dense_tree(const TreeLayout& tree) const {
  return {dense_thresholds_.data() + tree.dense_begin, dense_columns_.data() + tree.dense_begin, tree.depth};
}

template <std::size_t Rows>
void ForestScorer::walk_nodes(const TreeLayout& tree, const float* rows, std::uint32_t* leaf) const {
  const std::size_t stride = num_features();
  const TreeNode* nodes = nodes_.data();
  std::uint32_t node[Rows];
  std::fill(node, node + Rows, tree.root);
  for (std::uint32_t level = 0; level < tree.depth; ++level) {
    for (std::size_t r = 0; r < Rows; ++r) {
      const TreeNode& split = nodes[node[r]];
      const float value = rows[r * stride + (split.column & ~kMissingRight)];
      const bool right = (value > split.threshold) | ((value != value) & ((split.column & kMissingRight) != 0));
      node[r] = split.child[right];
    }
  }
  std::copy(node, node + Rows, leaf);
}

void ForestScorer::walk_tree(const TreeLayout& tree, TreeWalk walk, const float* rows, std::size_t n,
                             std::uint32_t* leaf) const {
  if (tree.dense) {
    walk_dense(walk, dense_tree(tree), rows, n, num_features(), leaf);
    const std::uint32_t* leaves = dense_leaves_.data() + tree.leaf_begin;
    for (std::size_t r = 0; r < n; ++r) leaf[r] = leaves[leaf[r]];
    return;
  }
  std::size_t r = 0;
  for (; r + kBlock <= n; r += kBlock) walk_nodes<kBlock>(tree, rows + r * num_features(), leaf + r);
  for (; r < n; ++r) walk_nodes<1>(tree, rows + r * num_features(), leaf + r);
}

void ForestScorer::leaves(const float* rows, std::size_t n, std::size_t tree, TreeWalk walk,
                          std::uint32_t* leaf) const {
  if (tree >= trees_.size()) throw InvalidInput("tree " + std::to_string(tree) + " out of range");
  walk_tree(trees_[tree], walk, rows, n, leaf);
}

void ForestScorer::accumulate_pass(const float* rows, std::size_t n, double* sums,
                                   std::uint32_t* first_leaf) const {
  const std::size_t k = num_models();
  std::fill(sums, sums + n * k, 0.0);
  std::uint32_t leaf[kPassRows];
  for (std::size_t t = 0; t < trees_.size(); ++t) {
    walk_tree(trees_[t], walk_, rows, n, t == 0 ? first_leaf : leaf);
    const std::uint32_t* reached = t == 0 ? first_leaf : leaf;
    for (std::size_t r = 0; r < n; ++r) {
      const double* v = values_.data() + std::size_t{reached[r]} * k;
      double* sum = sums + r * k;
      for (std::size_t j = 0; j < k; ++j) sum[j] += v[j];
    }
  }
  for (std::size_t i = 0; i < n * k; ++i) sums[i] /= divisor_[i % k];
}

void ForestScorer::predict_scores(const float* rows, std::size_t n, double* scores) const {
  std::uint32_t leaf[kPassRows];
  for (std::size_t begin = 0; begin < n; begin += kPassRows) {
    const std::size_t count = std::min(kPassRows, n - begin);
    accumulate_pass(rows + begin * num_features(), count, scores + begin * num_models(), leaf);
  }
}

ForestScorer::LeafDecision ForestScorer::masked_leaf_decision(std::uint32_t node, RowMask allowed,
                                                             double* scratch) const {
  const std::size_t k = num_models();
  const double* leaf_values = values_.data() + std::size_t{node} * k;
  for (std::size_t j = 0; j < k; ++j) scratch[j] = (0.0 + leaf_values[j]) / divisor_[j];
  const Ranked ranked = rank_scores(scratch, k, allowed);
  return {ranked.best, static_cast<float>(ranked.score), static_cast<float>(ranked.margin)};
}

void ForestScorer::fill_masked_decisions(const ModelMask& mask, std::vector<LeafDecision>& table) const {
  const std::size_t n_nodes = nodes_.size();
  std::vector<double> scratch(num_models());
  table.resize(mask.groups() * n_nodes);
  for (std::size_t g = 0; g < mask.groups(); ++g) {
    for (std::uint32_t node = 0; node < n_nodes; ++node) {
      if (is_leaf(node)) table[g * n_nodes + node] = masked_leaf_decision(node, mask.group(g), scratch.data());
    }
  }
}

void ForestScorer::score_rows(const float* rows, std::size_t n, ScoreOutput out, const ModelMask& mask) const {
  const std::size_t k = num_models();
  const bool one_tree = trees_.size() == 1;
  // Per-thread scratch: no allocation per call once warm.
  static thread_local std::vector<double> sums;
  static thread_local std::vector<LeafDecision> masked_decisions;
  // One tree: the precomputed leaf decision when every model is allowed; a
  // masked batch larger than the tree decides each (group, leaf) once; else
  // each row ranks its leaf's scores among its allowed models.
  const bool masked_table = one_tree && mask.restricts() && n >= nodes_.size();
  constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
  constexpr LeafDecision kNoDecision{kNoModel, kNaN, kNaN};
  if (masked_table) fill_masked_decisions(mask, masked_decisions);
  sums.resize(one_tree ? k : kPassRows * k);
  // Row i's decision from its leaf (in tree 0) and, for a forest, its summed scores.
  auto decide = [&](std::size_t i, std::uint32_t leaf, const double* summed) {
    const float* row = rows + i * num_features();
    LeafDecision decision;
    if (!mask.restricts() && one_tree) {
      decision = leaf_decisions_[leaf];
    } else if (masked_table) {
      const std::size_t g = mask.group_of(row);
      decision = g == ModelMask::kNoGroup ? kNoDecision : masked_decisions[g * nodes_.size() + leaf];
    } else if (one_tree) {
      const RowMask allowed = mask.row(row);
      decision = allowed.all ? leaf_decisions_[leaf] : masked_leaf_decision(leaf, allowed, sums.data());
    } else {
      const Ranked ranked = rank_scores(summed, k, mask.row(row));
      decision = {ranked.best, static_cast<float>(ranked.score), static_cast<float>(ranked.margin)};
    }
    out.model[i] = decision.model;
    if (out.score) out.score[i] = decision.score;
    if (out.margin) out.margin[i] = decision.margin;
    if (out.reason) out.reason[i] = static_cast<std::int32_t>(leaf);
  };
  if (one_tree) {
    // Every row walked at once, its leaf written into the output itself (the
    // reason column, else the model column), then each replaced in place.
    auto* leaves = reinterpret_cast<std::uint32_t*>(out.reason ? out.reason : out.model);
    if (!mask.restricts() && !out.score && !out.margin && !out.reason && trees_[0].dense) {  // predict()
      walk_dense(walk_, dense_tree(trees_[0]), rows, n, num_features(), leaves);
      for (std::size_t i = 0; i < n; ++i) out.model[i] = dense_leaf_models_[leaves[i]];
      return;
    }
    walk_tree(trees_[0], walk_, rows, n, leaves);
    for (std::size_t i = 0; i < n; ++i) decide(i, leaves[i], nullptr);
    return;
  }
  std::uint32_t leaf[kPassRows];
  for (std::size_t begin = 0; begin < n; begin += kPassRows) {
    const std::size_t count = std::min(kPassRows, n - begin);
    accumulate_pass(rows + begin * num_features(), count, sums.data(), leaf);
    for (std::size_t r = 0; r < count; ++r) decide(begin + r, leaf[r], sums.data() + r * k);
  }
}

std::vector<std::uint32_t> ForestScorer::path(const float* row, std::size_t tree) const {
  if (tree >= trees_.size()) throw InvalidInput("tree " + std::to_string(tree) + " out of range");
  std::vector<std::uint32_t> nodes{trees_[tree].root};
  while (!is_leaf(nodes.back())) {
    const TreeNode& node = nodes_[nodes.back()];
    const float v = row[node.column & ~kMissingRight];
    const bool missing_right = (node.column & kMissingRight) != 0;
    nodes.push_back(node.child[v != v ? missing_right : v > node.threshold]);
  }
  return nodes;
}

// ---- threshold ------------------------------------------------------------

ThresholdScorer::ThresholdScorer(std::size_t num_features, std::uint32_t feature,
                                 std::vector<float> cuts, std::int32_t missing_model)
    : Scorer(num_features, cuts.size() + 1),
      feature_(feature),
      cuts_(std::move(cuts)),
      missing_model_(missing_model) {
  if (feature_ >= num_features) invalid("threshold reads feature " + std::to_string(feature_));
  if (cuts_.empty()) invalid("a threshold needs at least one cut point");
  for (std::size_t i = 0; i < cuts_.size(); ++i) {
    if (!std::isfinite(cuts_[i])) invalid("cut " + std::to_string(i) + " is not finite");
    if (i > 0 && !(cuts_[i] > cuts_[i - 1])) invalid("cuts must be strictly ascending");
  }
  if (missing_model_ < 0 || static_cast<std::size_t>(missing_model_) > cuts_.size())
    invalid("missing model " + std::to_string(missing_model_) + " out of range");
}

// `model` if allowed, else the next allowed model above it, else the nearest below; kNoModel if none.
std::int32_t ThresholdScorer::nearest_allowed(std::int32_t model, RowMask allowed) const {
  if (allowed.allows(model)) return model;
  const auto k = static_cast<std::int32_t>(num_models());
  for (std::int32_t up = model + 1; up < k; ++up) {
    if (allowed.allows(up)) return up;
  }
  for (std::int32_t down = model - 1; down >= 0; --down) {
    if (allowed.allows(down)) return down;
  }
  return kNoModel;
}

void ThresholdScorer::score_rows(const float* rows, std::size_t n, ScoreOutput out, const ModelMask& mask) const {
  for (std::size_t i = 0; i < n; ++i) {
    const float v = rows[i * num_features() + feature_];
    std::int32_t model = missing_model_;
    float margin = std::numeric_limits<float>::quiet_NaN();
    if (v == v) {
      model = static_cast<std::int32_t>(std::lower_bound(cuts_.begin(), cuts_.end(), v) - cuts_.begin());
      // Distance to the nearest cut: how far the score is from flipping.
      margin = std::numeric_limits<float>::infinity();
      if (model > 0) margin = v - cuts_[model - 1];
      if (static_cast<std::size_t>(model) < cuts_.size()) margin = std::min(margin, cuts_[model] - v);
    }
    const std::int32_t chosen = nearest_allowed(model, mask.row(rows + i * num_features()));
    if (chosen != model) margin = std::numeric_limits<float>::quiet_NaN();
    out.model[i] = chosen;
    if (out.score) out.score[i] = v;
    if (out.margin) out.margin[i] = margin;
    if (out.reason) out.reason[i] = v == v ? model : -1;  // -1: the score was missing
  }
}

RoutePlan::RoutePlan(std::vector<std::int32_t> model_by_modality, std::size_t num_models)
    : model_by_modality_(std::move(model_by_modality)), num_models_(num_models) {
  for (std::size_t code = 0; code < model_by_modality_.size(); ++code) {
    const std::int32_t model = model_by_modality_[code];
    if (model < kNoModel || (model != kNoModel && static_cast<std::size_t>(model) >= num_models)) {
      invalid("modality " + std::to_string(code) + " routes to model " + std::to_string(model) + " of " +
              std::to_string(num_models));
    }
  }
}

RoutePlan::RoutePlan(std::shared_ptr<const Scorer> scorer, std::shared_ptr<const ModelMask> mask)
    : scorer_(std::move(scorer)), mask_(mask ? std::move(mask) : std::make_shared<const ModelMask>()) {
  if (!scorer_) invalid("a route plan needs a scorer");
  if (mask_->restricts() && mask_->num_models() != scorer_->num_models()) {
    invalid("the model mask covers " + std::to_string(mask_->num_models()) + " models, the policy has " +
            std::to_string(scorer_->num_models()));
  }
  num_models_ = scorer_->num_models();
}

PlanChoice RoutePlan::choose(const float* row, std::size_t modality) const {
  const float no_score = std::numeric_limits<float>::quiet_NaN();
  if (!scorer_) {
    const std::int32_t model = modality < model_by_modality_.size() ? model_by_modality_[modality] : kNoModel;
    return {model, no_score, static_cast<std::int32_t>(modality)};
  }
  PlanChoice choice{kNoModel, no_score, 0};
  float margin = 0;
  scorer_->score_rows(row, 1, {&choice.model, &choice.score, &margin, &choice.reason}, *mask_);
  return choice;
}

}  // namespace fastroute
