// Scorer: routing policies compiled to flat, immutable arrays and evaluated
// on float32 feature rows (row-major, num_features() columns, NaN = missing).
//
// Three kinds: an ordered rule table (first match wins), a forest of
// axis-aligned trees (a single tree is a forest of one) and a threshold
// switch on one feature. Each decision is a model index, a score, a margin and
// a reason id (rule index, leaf node or cut index).
//
// A ModelMask restricts each row to the models able to take its input (a
// router passes the models registered for the row's modality): rule tables
// skip rules naming a masked model, trees and forests pick the best allowed
// score, a threshold moves to the nearest allowed model. A row allowed no
// model gets kNoModel.
//
// Thread-safety: a Scorer and a ModelMask are immutable after construction,
// so any number of threads may score with them at once. Scoring never
// allocates except the per-call thread handles of score_batch and, the first
// time a thread scores a large masked one-tree batch, its (group, leaf)
// decision table (thread-local, reused). Construction validates every array
// and throws InvalidInput naming the bad entry.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "tree_walk.hpp"

namespace fastroute {

// The model index of a row no allowed model may serve.
inline constexpr std::int32_t kNoModel = -1;

// The models one row may be routed to.
struct RowMask {
  const std::uint8_t* flags;  // num_models flags, nonzero = allowed; unused when `all`
  bool all;                   // every model allowed
  bool allows(std::int32_t model) const { return all || (flags != nullptr && flags[model] != 0); }
};

// Which models each row may use. Default-constructed: every model, every row.
// Otherwise `groups` rows of num_models flags: one group applies to every
// row; several are indexed by the row's modality code (feature kModality,
// column 0 of the schema), and a row whose code is missing or out of range
// may use no model.
class ModelMask {
 public:
  ModelMask() = default;
  // flags: groups x num_models, row-major. Throws InvalidInput on a size
  // mismatch or zero groups. Allocates; not thread-safe while constructing.
  ModelMask(std::vector<std::uint8_t> flags, std::size_t groups, std::size_t num_models);

  // A row's group when it may use no model.
  static constexpr std::size_t kNoGroup = static_cast<std::size_t>(-1);

  std::size_t num_models() const { return num_models_; }
  std::size_t groups() const { return groups_; }
  bool restricts() const { return groups_ != 0; }
  // The group `row` belongs to, or kNoGroup. Only when restricts().
  std::size_t group_of(const float* row) const;
  // The models of group g (kNoGroup: none). Only when restricts().
  RowMask group(std::size_t g) const;
  // The models `row` may use. Thread-safe, never blocks or allocates.
  RowMask row(const float* row) const { return restricts() ? group(group_of(row)) : RowMask{nullptr, true}; }

 private:
  std::vector<std::uint8_t> flags_;
  std::vector<std::uint8_t> all_;  // per group: every flag set
  std::size_t groups_ = 0;
  std::size_t num_models_ = 0;
};

// Destination columns of a scoring call; each points to n elements. Only
// `model` is required: the others may be null.
struct ScoreOutput {
  std::int32_t* model;
  float* score;
  float* margin;
  std::int32_t* reason;

  // The same columns from row `rows` on (null columns stay null).
  ScoreOutput offset(std::size_t rows) const {
    auto at = [rows](auto* column) { return column ? column + rows : column; };
    return {at(model), at(score), at(margin), at(reason)};
  }
};

class Scorer {
 public:
  Scorer(std::size_t num_features, std::size_t num_models);
  virtual ~Scorer() = default;
  Scorer(const Scorer&) = delete;
  Scorer& operator=(const Scorer&) = delete;

  std::size_t num_features() const { return num_features_; }
  std::size_t num_models() const { return num_models_; }

  // Scores n contiguous rows on the calling thread, each among the models
  // `mask` allows it (its num_models() must match; the caller checks).
  // out.score, out.margin and out.reason may be null when the caller wants
  // only the models. Thread-safe; never blocks.
  virtual void score_rows(const float* rows, std::size_t n, ScoreOutput out, const ModelMask& mask) const = 0;
  void score_rows(const float* rows, std::size_t n, ScoreOutput out) const { score_rows(rows, n, out, ModelMask{}); }

  // Scores n rows, splitting them over up to `threads` threads (0 = hardware
  // concurrency) when the batch holds at least kParallelMinWork units of
  // work (rows x work_per_row()). Blocking; thread-safe.
  void score_batch(const float* rows, std::size_t n, ScoreOutput out, unsigned threads,
                   const ModelMask& mask = ModelMask{}) const;

  // Starting a thread costs tens of microseconds: below this much work
  // (about 1.5 ms of single-thread scoring, one depth-8 tree on 65,536 rows)
  // one thread is as fast. See benchmarks/README.md, "decision engine".
  static constexpr std::size_t kParallelMinWork = 65536;

 protected:
  // Relative cost of scoring one row (trees in a forest; 1 otherwise).
  virtual std::size_t work_per_row() const { return 1; }

 private:
  std::size_t num_features_;
  std::size_t num_models_;
};

// Comparison of one feature against a constant. A missing (NaN) value fails
// every comparison, != included.
enum class CompareOp : std::uint8_t { kLess, kLessEqual, kGreater, kGreaterEqual, kEqual, kNotEqual };
// Each CompareOp's symbol, in enum order (Python reads them as _core.COMPARE_OPS).
inline constexpr std::array<std::string_view, 6> kCompareOpSymbols = {"<", "<=", ">", ">=", "==", "!="};

struct Condition {
  std::uint32_t feature;
  CompareOp op;
  float value;
};

// Ordered rules: rule r holds conditions [rule_begin[r], rule_begin[r+1]) and
// routes to rule_model[r] when all hold and the mask allows that model. No
// such rule: default_model (reason -1) if allowed, else kNoModel.
class RuleScorer final : public Scorer {
 public:
  RuleScorer(std::size_t num_features, std::size_t num_models, std::vector<Condition> conditions,
             std::vector<std::uint32_t> rule_begin, std::vector<std::int32_t> rule_model,
             std::int32_t default_model);
  using Scorer::score_rows;
  void score_rows(const float* rows, std::size_t n, ScoreOutput out, const ModelMask& mask) const override;

 private:
  std::int32_t first_match(const float* row, RowMask allowed) const;

  std::vector<Condition> conditions_;
  std::vector<std::uint32_t> rule_begin_;  // size rules + 1
  std::vector<std::int32_t> rule_model_;
  std::int32_t default_model_;
};

// One node of a compiled tree, 16 bytes, walked on the caller's rows as they
// are: a value goes to child[1] exactly when it is greater than the
// threshold, or is missing (NaN) and `column` has kMissingRight set (the low
// bits are the feature). Leaves loop to themselves.
struct TreeNode {
  float threshold;
  std::uint32_t column;
  std::uint32_t child[2];
};
static_assert(sizeof(TreeNode) == 16, "TreeNode must stay 16 bytes (4 per cache line)");

// Input description of a forest, with sklearn's conventions: per node a
// feature, threshold (x <= threshold goes left), children (-1 for leaves),
// missing direction and num_models values (leaf scores; ignored on inner
// nodes). Tree t owns nodes [tree_begin[t], tree_begin[t+1]), root first.
// The score of model j is the sum over trees of its leaf value, divided by
// divisor[j] (the tree count for an average).
struct ForestArrays {
  std::vector<std::int32_t> feature;
  std::vector<double> threshold;
  std::vector<std::int32_t> left;
  std::vector<std::int32_t> right;
  std::vector<std::uint8_t> missing_left;
  std::vector<double> values;  // nodes x num_models
  std::vector<std::uint32_t> tree_begin;
  std::vector<double> divisor;  // num_models
};

class ForestScorer final : public Scorer {
 public:
  ForestScorer(std::size_t num_features, std::size_t num_models, const ForestArrays& arrays);
  using Scorer::score_rows;
  // The best-scored allowed model (ties: the lowest index); margin: its lead
  // over the best other allowed model (0 when it is the only one). A masked
  // one-tree batch of at least as many rows as the tree has nodes first
  // decides every (group, leaf) pair once (allocates that table).
  void score_rows(const float* rows, std::size_t n, ScoreOutput out, const ModelMask& mask) const override;

  // Per-model scores of n rows (n x num_models), as the forest averages them.
  void predict_scores(const float* rows, std::size_t n, double* scores) const;
  // Node ids from the root to the leaf of `tree` for one row.
  std::vector<std::uint32_t> path(const float* row, std::size_t tree) const;
  // The leaf (node id) each of n rows reaches in `tree`, walked with `walk`
  // (which must be supported: tree_walk_supported) when the tree is stored
  // complete (depth <= kMaxDenseDepth), node by node otherwise. Throws
  // InvalidInput for a tree out of range. Thread-safe; never blocks.
  void leaves(const float* rows, std::size_t n, std::size_t tree, TreeWalk walk, std::uint32_t* leaf) const;
  std::size_t num_trees() const { return trees_.size(); }

  // Trees up to this depth are also stored complete, for the vector walks.
  static constexpr std::uint32_t kMaxDenseDepth = 10;

 protected:
  std::size_t work_per_row() const override { return trees_.size(); }

 private:
  // Rows walked together through one sparse tree: independent walks the CPU overlaps.
  static constexpr std::size_t kBlock = 16;
  // Rows taken through every tree before moving on, so each tree is loaded
  // into cache once per pass rather than once per block.
  static constexpr std::size_t kPassRows = 256;

  // A complete tree in level order (see DenseTree): leaves above the last
  // level are padded with always-left splits (threshold +inf).
  struct TreeLayout {
    std::uint32_t root;         // in nodes_
    std::uint32_t depth;
    bool dense;
    std::uint32_t dense_begin;  // in dense_thresholds_ and dense_columns_: 2^depth - 1 splits
    std::uint32_t leaf_begin;   // in dense_leaves_: 2^depth node ids
  };
  // The decision of a one-tree policy at each leaf, precomputed.
  struct LeafDecision {
    std::int32_t model;
    float score;
    float margin;
  };

  void add_dense(TreeLayout& tree, std::uint32_t slot, std::uint32_t node, std::uint32_t level);
  // The decision at leaf `node` of a one-tree policy among the allowed models;
  // `scratch` holds num_models() doubles.
  LeafDecision masked_leaf_decision(std::uint32_t node, RowMask allowed, double* scratch) const;
  // That decision for every (group, node) of `mask` into `table` (groups x nodes).
  void fill_masked_decisions(const ModelMask& mask, std::vector<LeafDecision>& table) const;
  bool is_leaf(std::uint32_t node) const { return nodes_[node].child[0] == node; }
  // The leaf (node id) each of n rows reaches in `tree`.
  void walk_tree(const TreeLayout& tree, TreeWalk walk, const float* rows, std::size_t n, std::uint32_t* leaf) const;
  DenseTree dense_tree(const TreeLayout& tree) const;
  // The same node by node (trees too deep to store complete).
  template <std::size_t Rows>
  void walk_nodes(const TreeLayout& tree, const float* rows, std::uint32_t* leaf) const;
  // Averaged scores (n x num_models) of n <= kPassRows rows; the leaf of
  // each row in tree 0 into first_leaf.
  void accumulate_pass(const float* rows, std::size_t n, double* sums, std::uint32_t* first_leaf) const;

  std::vector<TreeNode> nodes_;
  std::vector<double> values_;  // nodes x num_models, leaf scores
  std::vector<TreeLayout> trees_;
  std::vector<float> dense_thresholds_;
  std::vector<std::uint32_t> dense_columns_;
  std::vector<std::uint32_t> dense_leaves_;
  std::vector<double> divisor_;
  std::vector<LeafDecision> leaf_decisions_;  // per node, one-tree policies only
  std::vector<std::int32_t> dense_leaf_models_;  // per dense leaf slot, one dense tree only
  TreeWalk walk_ = best_tree_walk();
};

// Threshold switch on one feature: model = number of cuts the value exceeds
// (strictly, cuts ascending), so model 0 is the default below every cut.
// Missing values go to missing_model (reason -1; otherwise the reason is the
// model index). A masked model gives way to the next allowed model above it
// (more capable), else the nearest allowed below; the margin is then NaN.
class ThresholdScorer final : public Scorer {
 public:
  ThresholdScorer(std::size_t num_features, std::uint32_t feature, std::vector<float> cuts,
                  std::int32_t missing_model);
  using Scorer::score_rows;
  void score_rows(const float* rows, std::size_t n, ScoreOutput out, const ModelMask& mask) const override;

 private:
  std::int32_t nearest_allowed(std::int32_t model, RowMask allowed) const;

  std::uint32_t feature_;
  std::vector<float> cuts_;
  std::int32_t missing_model_;
};

// What decides one plain request natively (decision/fast_path.py): either a
// compiled Scorer among the models a per-modality ModelMask allows, or a fixed
// model per modality code (ByModality's choice, made once per catalog).
struct PlanChoice {
  std::int32_t model = kNoModel;  // kNoModel: no model may serve the row
  float score;                    // NaN: the policy gives no score (rules, a table)
  std::int32_t reason;            // the scorer's reason id; the modality code for a table
};

class RoutePlan {
 public:
  // model_by_modality[c]: the model serving modality code c, or kNoModel.
  // Throws InvalidInput for an entry outside [kNoModel, num_models).
  RoutePlan(std::vector<std::int32_t> model_by_modality, std::size_t num_models);
  // Throws InvalidInput for a null scorer, or a mask that restricts and
  // covers another number of models than the scorer's.
  RoutePlan(std::shared_ptr<const Scorer> scorer, std::shared_ptr<const ModelMask> mask);

  std::size_t num_models() const { return num_models_; }
  // The model serving `row` (num_features() of the scorer wide; unread by a
  // table), whose modality code is `modality`. Thread-safe (immutable), never
  // blocks or allocates.
  PlanChoice choose(const float* row, std::size_t modality) const;

 private:
  std::vector<std::int32_t> model_by_modality_;  // a table plan
  std::shared_ptr<const Scorer> scorer_;         // a scored plan (null for a table)
  std::shared_ptr<const ModelMask> mask_;
  std::size_t num_models_;
};

}  // namespace fastroute
