#include "scorer.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <thread>

#include "errors.hpp"

namespace fastroute {

namespace {

[[noreturn]] void invalid(const std::string& what) { throw InvalidInput("policy arrays: " + what); }

// Best and runner-up of k scores; ties go to the lowest index.
struct Ranked {
  std::int32_t best;
  double score;
  double margin;
};

Ranked rank_scores(const double* scores, std::size_t k) {
  std::size_t best = 0;
  for (std::size_t j = 1; j < k; ++j) {
    if (scores[j] > scores[best]) best = j;
  }
  double second = -std::numeric_limits<double>::infinity();
  for (std::size_t j = 0; j < k; ++j) {
    if (j != best) second = std::max(second, scores[j]);
  }
  double margin = k > 1 ? scores[best] - second : 0.0;
  return {static_cast<std::int32_t>(best), scores[best], margin};
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

}  // namespace

Scorer::Scorer(std::size_t num_features, std::size_t num_models)
    : num_features_(num_features), num_models_(num_models) {
  if (num_features == 0) invalid("a policy needs at least one feature");
  if (num_models == 0) invalid("a policy needs at least one model");
}

void Scorer::score_batch(const float* rows, std::size_t n, ScoreOutput out, unsigned threads) const {
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  if (n < kParallelMinRows || threads == 1) {
    score_rows(rows, n, out);
    return;
  }
  threads = static_cast<unsigned>(std::min<std::size_t>(threads, n / (kParallelMinRows / 2)));
  std::size_t chunk = (n + threads - 1) / threads;
  std::vector<std::jthread> workers;
  workers.reserve(threads - 1);
  for (unsigned t = 1; t < threads; ++t) {
    std::size_t begin = std::min(n, t * chunk);
    std::size_t count = std::min(n, begin + chunk) - begin;
    workers.emplace_back([this, rows, begin, count, out] {
      score_rows(rows + begin * num_features(), count, out.offset(begin));
    });
  }
  score_rows(rows, std::min(n, chunk), out);
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

std::int32_t RuleScorer::first_match(const float* row) const {
  for (std::size_t r = 0; r < rule_model_.size(); ++r) {
    bool all = true;
    for (std::uint32_t i = rule_begin_[r]; all && i < rule_begin_[r + 1]; ++i) {
      const Condition& c = conditions_[i];
      all = holds(c, row[c.feature]);
    }
    if (all) return static_cast<std::int32_t>(r);
  }
  return -1;
}

void RuleScorer::score_rows(const float* rows, std::size_t n, ScoreOutput out) const {
  for (std::size_t i = 0; i < n; ++i) {
    std::int32_t rule = first_match(rows + i * num_features());
    out.model[i] = rule < 0 ? default_model_ : rule_model_[rule];
    out.score[i] = std::numeric_limits<float>::quiet_NaN();
    out.margin[i] = std::numeric_limits<float>::quiet_NaN();
    out.reason[i] = rule;
  }
}

// ---- forests --------------------------------------------------------------

ForestScorer::ForestScorer(std::size_t num_features, std::size_t num_models, const ForestArrays& a)
    : Scorer(num_features, num_models), divisor_(a.divisor) {
  const std::size_t n_nodes = a.feature.size();
  if (a.threshold.size() != n_nodes || a.left.size() != n_nodes || a.right.size() != n_nodes ||
      a.missing_left.size() != n_nodes || a.values.size() != n_nodes * num_models)
    invalid("node arrays differ in length");
  if (a.tree_begin.size() < 2 || a.tree_begin.front() != 0 || a.tree_begin.back() != n_nodes)
    invalid("tree_begin must start at 0, end at the node count and hold at least one tree");
  if (divisor_.size() != num_models) invalid("divisor must hold one entry per model");
  for (double d : divisor_) {
    if (!(d > 0) || !std::isfinite(d)) invalid("divisors must be positive and finite");
  }
  if (num_features > std::numeric_limits<std::uint16_t>::max()) invalid("too many features");
  nodes_.resize(n_nodes);
  values_.assign(a.values.begin(), a.values.end());
  for (std::size_t t = 0; t + 1 < a.tree_begin.size(); ++t) {
    const std::uint32_t begin = a.tree_begin[t], end = a.tree_begin[t + 1];
    if (begin >= end) invalid("tree " + std::to_string(t) + " is empty");
    std::vector<std::uint32_t> depth(end - begin, 0);
    std::uint32_t max_depth = 0;
    for (std::uint32_t i = begin; i < end; ++i) {
      TreeNode& node = nodes_[i];
      const std::string where = "node " + std::to_string(i) + " (tree " + std::to_string(t) + ")";
      if ((a.left[i] < 0) != (a.right[i] < 0)) invalid(where + " has one child");
      if (a.left[i] < 0) {
        node = {0.0f, 0, 0, 1, {i, i}};
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
        depth[child - begin] = depth[i - begin] + 1;
        max_depth = std::max(max_depth, depth[child - begin]);
      }
      if (a.feature[i] < 0 || static_cast<std::size_t>(a.feature[i]) >= num_features)
        invalid(where + " splits on feature " + std::to_string(a.feature[i]));
      if (std::isnan(a.threshold[i])) invalid(where + " has a NaN threshold");
      node = {float32_threshold(a.threshold[i]), static_cast<std::uint16_t>(a.feature[i]),
              static_cast<std::uint8_t>(a.missing_left[i] ? 0 : 1), 0,
              {static_cast<std::uint32_t>(a.left[i]), static_cast<std::uint32_t>(a.right[i])}};
    }
    roots_.push_back(begin);
    depths_.push_back(max_depth);
  }
}

void ForestScorer::walk_block(std::size_t tree, const float* rows, std::size_t n,
                              std::uint32_t* leaf) const {
  const std::size_t nf = num_features();
  const TreeNode* nodes = nodes_.data();
  for (std::size_t r = 0; r < n; ++r) leaf[r] = roots_[tree];
  for (std::uint32_t step = 0; step < depths_[tree]; ++step) {
    for (std::size_t r = 0; r < n; ++r) {
      const TreeNode& node = nodes[leaf[r]];
      const float v = rows[r * nf + node.feature];
      const unsigned right = static_cast<unsigned>(v > node.threshold) |
                             (static_cast<unsigned>(v != v) & node.missing_right);
      leaf[r] = node.child[right];
    }
  }
}

void ForestScorer::accumulate_block(const float* rows, std::size_t n, double* sums,
                                    std::uint32_t* first_leaf) const {
  const std::size_t k = num_models();
  std::fill(sums, sums + n * k, 0.0);
  std::uint32_t block_leaf[kBlock];
  for (std::size_t t = 0; t < roots_.size(); ++t) {
    std::uint32_t* leaf = t == 0 ? first_leaf : block_leaf;
    walk_block(t, rows, n, leaf);
    for (std::size_t r = 0; r < n; ++r) {
      const double* v = values_.data() + leaf[r] * k;
      for (std::size_t j = 0; j < k; ++j) sums[r * k + j] += v[j];
    }
  }
  for (std::size_t r = 0; r < n; ++r) {
    for (std::size_t j = 0; j < k; ++j) sums[r * k + j] /= divisor_[j];
  }
}

void ForestScorer::predict_scores(const float* rows, std::size_t n, double* scores) const {
  for (std::size_t begin = 0; begin < n; begin += kBlock) {
    const std::size_t count = std::min(kBlock, n - begin);
    std::uint32_t leaf[kBlock];
    accumulate_block(rows + begin * num_features(), count, scores + begin * num_models(), leaf);
  }
}

void ForestScorer::score_rows(const float* rows, std::size_t n, ScoreOutput out) const {
  const std::size_t k = num_models();
  std::vector<double> sums(kBlock * k);  // one allocation per call, not per row
  for (std::size_t begin = 0; begin < n; begin += kBlock) {
    const std::size_t count = std::min(kBlock, n - begin);
    // Reason: the leaf reached in the first tree (the whole path for a single tree).
    std::uint32_t leaf[kBlock];
    accumulate_block(rows + begin * num_features(), count, sums.data(), leaf);
    for (std::size_t r = 0; r < count; ++r) {
      const Ranked ranked = rank_scores(sums.data() + r * k, k);
      out.model[begin + r] = ranked.best;
      out.score[begin + r] = static_cast<float>(ranked.score);
      out.margin[begin + r] = static_cast<float>(ranked.margin);
      out.reason[begin + r] = static_cast<std::int32_t>(leaf[r]);
    }
  }
}

std::vector<std::uint32_t> ForestScorer::path(const float* row, std::size_t tree) const {
  if (tree >= roots_.size()) throw InvalidInput("tree " + std::to_string(tree) + " out of range");
  std::vector<std::uint32_t> nodes{roots_[tree]};
  while (!nodes_[nodes.back()].is_leaf) {
    const TreeNode& node = nodes_[nodes.back()];
    const float v = row[node.feature];
    nodes.push_back(node.child[(v > node.threshold) | ((v != v) & node.missing_right)]);
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

void ThresholdScorer::score_rows(const float* rows, std::size_t n, ScoreOutput out) const {
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
    out.model[i] = model;
    out.score[i] = v;
    out.margin[i] = margin;
    out.reason[i] = model;
  }
}

}  // namespace fastroute
