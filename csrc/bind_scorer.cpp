// Binding of the compiled policies' scorers (scorer.hpp): feature rows are
// checked at the boundary (float32, C-contiguous, the scorer's width), large
// batches are scored without the GIL.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "binding.hpp"
#include "errors.hpp"
#include "scorer.hpp"

namespace fastroute::binding {

namespace {

template <typename T>
std::vector<T> to_vector(const InArray<T>& a) {
  return std::vector<T>(a.data(), a.data() + a.size());
}

// Feature rows must already be float32, C-contiguous and num_features wide:
// the Python layer converts, the boundary only checks.
const float* checked_rows(const py::array& rows, const Scorer& scorer, int ndim, std::size_t* n) {
  if (!rows.dtype().is(py::dtype::of<float>()))
    throw InvalidInput("features must be float32, got " + std::string(py::str(rows.dtype())));
  if (rows.ndim() != ndim)
    throw InvalidInput("features must have " + std::to_string(ndim) + " dimension(s), got " +
                       std::to_string(rows.ndim()));
  const auto width = static_cast<std::size_t>(rows.shape(ndim - 1));
  if (width != scorer.num_features())
    throw InvalidInput("features have " + std::to_string(width) + " columns, the policy expects " +
                       std::to_string(scorer.num_features()));
  if (!(rows.flags() & py::array::c_style)) throw InvalidInput("features must be C-contiguous");
  *n = ndim == 1 ? 1 : static_cast<std::size_t>(rows.shape(0));
  return static_cast<const float*>(rows.data());
}

// The mask to score with: every model when none is given. Taken as a handle:
// pybind11's own conversion of None to a null pointer costs more than
// scoring a row (a failed first overload pass, then a raised and cleared
// AttributeError per call).
const ModelMask& checked_mask(py::handle mask_arg, const Scorer& scorer) {
  static const ModelMask kEveryModel;
  if (mask_arg.is_none()) return kEveryModel;
  const auto* mask = mask_arg.cast<const ModelMask*>();
  if (mask->num_models() != scorer.num_models())
    throw InvalidInput("the model mask covers " + std::to_string(mask->num_models()) + " models, the policy has " +
                       std::to_string(scorer.num_models()));
  return *mask;
}

std::shared_ptr<ModelMask> make_mask(const InArray<std::uint8_t>& flags) {
  if (flags.ndim() != 2) throw InvalidInput("a model mask is a (groups, models) array");
  return std::make_shared<ModelMask>(to_vector(flags), static_cast<std::size_t>(flags.shape(0)),
                                     static_cast<std::size_t>(flags.shape(1)));
}

// One row is scored with the GIL held: releasing and re-taking it would cost
// more than the scoring (a few hundred nanoseconds at most).
py::tuple score_row(const Scorer& scorer, const py::array& row, py::handle mask) {
  std::size_t n = 0;
  const float* data = checked_rows(row, scorer, 1, &n);
  std::int32_t model = 0, reason = 0;
  float score = 0, margin = 0;
  scorer.score_rows(data, 1, {&model, &score, &margin, &reason}, checked_mask(mask, scorer));
  return py::make_tuple(model, score, margin, reason);
}

// Batches below this many rows are scored with the GIL held, for the same reason.
constexpr std::size_t kReleaseGilFromRows = 64;

// The mask is held by the caller's Python reference for the whole call (the GIL is
// released meanwhile): pybind11 keeps the argument alive until the function returns.
py::tuple score_batch(const Scorer& scorer, const py::array& rows, unsigned threads, py::handle mask) {
  std::size_t n = 0;
  const float* data = checked_rows(rows, scorer, 2, &n);
  const ModelMask& allowed = checked_mask(mask, scorer);
  py::array_t<std::int32_t> model(n), reason(n);
  py::array_t<float> score(n), margin(n);
  ScoreOutput out{model.mutable_data(), score.mutable_data(), margin.mutable_data(), reason.mutable_data()};
  {
    std::optional<py::gil_scoped_release> release;
    if (n >= kReleaseGilFromRows) release.emplace();
    scorer.score_batch(data, n, out, threads, allowed);
  }
  return py::make_tuple(model, score, margin, reason);
}

py::array_t<std::int32_t> predict_models(const Scorer& scorer, const py::array& rows, unsigned threads,
                                         py::handle mask) {
  std::size_t n = 0;
  const float* data = checked_rows(rows, scorer, 2, &n);
  const ModelMask& allowed = checked_mask(mask, scorer);
  py::array_t<std::int32_t> model(n);
  ScoreOutput out{model.mutable_data(), nullptr, nullptr, nullptr};
  {
    std::optional<py::gil_scoped_release> release;
    if (n >= kReleaseGilFromRows) release.emplace();
    scorer.score_batch(data, n, out, threads, allowed);
  }
  return model;
}

std::shared_ptr<RuleScorer> make_rules(std::size_t num_features, std::size_t num_models,
                                       const InArray<std::uint32_t>& feature,
                                       const InArray<std::uint8_t>& op, const InArray<float>& value,
                                       const InArray<std::uint32_t>& rule_begin,
                                       const InArray<std::int32_t>& rule_model, std::int32_t default_model) {
  if (feature.size() != op.size() || feature.size() != value.size())
    throw InvalidInput("condition arrays differ in length");
  std::vector<Condition> conditions(feature.size());
  for (py::ssize_t i = 0; i < feature.size(); ++i) {
    conditions[i] = {feature.data()[i], static_cast<CompareOp>(op.data()[i]), value.data()[i]};
  }
  return std::make_shared<RuleScorer>(num_features, num_models, std::move(conditions), to_vector(rule_begin),
                                      to_vector(rule_model), default_model);
}

std::shared_ptr<ForestScorer> make_forest(std::size_t num_features, const InArray<std::int32_t>& feature,
                                          const InArray<double>& threshold, const InArray<std::int32_t>& left,
                                          const InArray<std::int32_t>& right,
                                          const InArray<std::uint8_t>& missing_left, const InArray<double>& values,
                                          const InArray<std::uint32_t>& tree_begin, const InArray<double>& divisor) {
  if (values.ndim() != 2) throw InvalidInput("values must be a (nodes, models) matrix");
  ForestArrays arrays{to_vector(feature),      to_vector(threshold), to_vector(left),       to_vector(right),
                      to_vector(missing_left), to_vector(values),    to_vector(tree_begin), to_vector(divisor)};
  return std::make_shared<ForestScorer>(num_features, static_cast<std::size_t>(values.shape(1)), arrays);
}

py::array_t<double> predict_scores(const ForestScorer& forest, const py::array& rows) {
  std::size_t n = 0;
  const float* data = checked_rows(rows, forest, 2, &n);
  py::array_t<double> scores({n, forest.num_models()});
  double* out = scores.mutable_data();
  {
    py::gil_scoped_release release;
    forest.predict_scores(data, n, out);
  }
  return scores;
}

// The kernel named `walk` ("auto": the fastest this CPU supports); InvalidInput
// for a name not in TREE_WALKS or a kernel this CPU cannot run.
TreeWalk checked_walk(const std::string& walk) {
  if (walk == "auto") return best_tree_walk();
  for (std::size_t code = 0; code < kTreeWalkNames.size(); ++code) {
    if (walk != kTreeWalkNames[code]) continue;
    const auto chosen = static_cast<TreeWalk>(code);
    if (!tree_walk_supported(chosen)) throw InvalidInput("this CPU cannot run the " + walk + " tree walk");
    return chosen;
  }
  throw InvalidInput("unknown tree walk '" + walk + "' (auto, scalar, avx2 or avx512)");
}

py::array_t<std::uint32_t> forest_leaves(const ForestScorer& forest, const py::array& rows, std::size_t tree,
                                         const std::string& walk) {
  std::size_t n = 0;
  const float* data = checked_rows(rows, forest, 2, &n);
  const TreeWalk kernel = checked_walk(walk);
  if (tree >= forest.num_trees()) throw InvalidInput("tree " + std::to_string(tree) + " out of range");
  py::array_t<std::uint32_t> leaf(n);
  std::uint32_t* out = leaf.mutable_data();
  {
    py::gil_scoped_release release;
    forest.leaves(data, n, tree, kernel, out);
  }
  return leaf;
}

std::vector<std::uint32_t> forest_path(const ForestScorer& forest, const py::array& row, std::size_t tree) {
  std::size_t n = 0;
  return forest.path(checked_rows(row, forest, 1, &n), tree);
}

}  // namespace

void bind_scorer(py::module_& m) {
  m.attr("NO_MODEL") = kNoModel;
  py::dict compare_ops;  // symbol -> the CompareOp code a RuleScorer takes
  for (std::size_t code = 0; code < kCompareOpSymbols.size(); ++code) {
    compare_ops[py::str(kCompareOpSymbols[code].data(), kCompareOpSymbols[code].size())] = code;
  }
  m.attr("COMPARE_OPS") = compare_ops;
  py::list walks;  // the tree walk kernels, in TreeWalk order; those this CPU runs: supported_tree_walks()
  for (const std::string_view name : kTreeWalkNames) walks.append(py::str(name.data(), name.size()));
  m.attr("TREE_WALKS") = py::tuple(walks);
  m.def("supported_tree_walks", [] {
    std::vector<std::string> names;
    for (std::size_t code = 0; code < kTreeWalkNames.size(); ++code) {
      if (tree_walk_supported(static_cast<TreeWalk>(code))) names.emplace_back(kTreeWalkNames[code]);
    }
    return names;
  }, "The tree walk kernels this CPU can run, slowest first; the scorers use the last.");
  py::class_<ModelMask, std::shared_ptr<ModelMask>>(
      m, "ModelMask",
      "Which models each row may use: a (groups, models) array of flags; one group applies to every row, "
      "several are indexed by the row's modality code (a row of no known modality may use no model).")
      .def(py::init(&make_mask), py::arg("flags"))
      .def_property_readonly("num_models", &ModelMask::num_models);
  py::class_<Scorer, std::shared_ptr<Scorer>>(m, "Scorer", "A compiled, immutable routing policy.")
      .def_property_readonly("num_features", &Scorer::num_features)
      .def_property_readonly("num_models", &Scorer::num_models)
      .def("score", &score_row, py::arg("row"), py::arg("mask") = py::none(),
           "(model, score, margin, reason) for one float32 row; model is NO_MODEL when the mask allows none.")
      .def("score_batch", &score_batch, py::arg("rows"), py::arg("threads") = 0, py::arg("mask") = py::none(),
           "(model, score, margin, reason) arrays for an (n, F) float32 matrix.")
      .def("predict", &predict_models, py::arg("rows"), py::arg("threads") = 0, py::arg("mask") = py::none(),
           "Model index array for an (n, F) float32 matrix.");
  py::class_<RuleScorer, Scorer, std::shared_ptr<RuleScorer>>(m, "RuleScorer")
      .def(py::init(&make_rules), py::arg("num_features"), py::arg("num_models"), py::arg("feature"),
           py::arg("op"), py::arg("value"), py::arg("rule_begin"), py::arg("rule_model"),
           py::arg("default_model"));
  py::class_<ForestScorer, Scorer, std::shared_ptr<ForestScorer>>(m, "ForestScorer")
      .def(py::init(&make_forest), py::arg("num_features"), py::arg("feature"), py::arg("threshold"),
           py::arg("left"), py::arg("right"), py::arg("missing_left"), py::arg("values"),
           py::arg("tree_begin"), py::arg("divisor"))
      .def_property_readonly("num_trees", &ForestScorer::num_trees)
      .def("predict_scores", &predict_scores, py::arg("rows"))
      .def("path", &forest_path, py::arg("row"), py::arg("tree") = 0)
      .def("leaves", &forest_leaves, py::arg("rows"), py::arg("tree") = 0, py::arg("walk") = "auto",
           "The leaf (node id) each row of an (n, F) float32 matrix reaches in `tree`, walked by the kernel "
           "`walk` (auto or one of supported_tree_walks()): every kernel gives the same leaves.");
  py::class_<ThresholdScorer, Scorer, std::shared_ptr<ThresholdScorer>>(m, "ThresholdScorer")
      .def(py::init([](std::size_t num_features, std::uint32_t feature, const InArray<float>& cuts,
                       std::int32_t missing_model) {
             return std::make_shared<ThresholdScorer>(num_features, feature, to_vector(cuts), missing_model);
           }),
           py::arg("num_features"), py::arg("feature"), py::arg("cuts"), py::arg("missing_model"));
}

}  // namespace fastroute::binding
