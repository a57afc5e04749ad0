// Binding of the bandits (bandit.hpp): converts and checks arrays at the
// boundary, releases the GIL around every decision and update, converts back.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bandit.hpp"
#include "binding.hpp"
#include "errors.hpp"

namespace fastroute::binding {

namespace {

// The algorithms' names in enum order: Python reads them, never retypes them.
constexpr std::array<std::string_view, kBanditAlgorithmCount> kAlgorithmNames = {
    "greedy", "ucb1", "thompson_beta", "thompson_gaussian", "linucb", "lin_thompson"};

std::size_t algorithm_index(const std::string& name) {
  for (std::size_t i = 0; i < kAlgorithmNames.size(); ++i)
    if (kAlgorithmNames[i] == name) return i;
  throw InvalidInput("unknown bandit algorithm '" + name + "'");
}

// A feature row (1-D, float32 after conversion) or none for context-free bandits.
struct Row {
  std::optional<InArray<float>> values;
  const float* data() const { return values ? values->data() : nullptr; }
  std::size_t width() const { return values ? static_cast<std::size_t>(values->size()) : 0; }
};

Row to_row(const py::object& row, int ndim) {
  Row out;
  if (row.is_none()) return out;
  out.values = InArray<float>::ensure(row);
  if (!out.values || out.values->ndim() != ndim)
    throw InvalidInput("features must be a " + std::to_string(ndim) + "-D array of numbers");
  return out;
}

// The allowed-arm mask: one value per arm, or none for all arms.
std::optional<InArray<std::uint8_t>> to_mask(const py::object& allowed, const Bandit& bandit) {
  if (allowed.is_none()) return std::nullopt;
  auto mask = InArray<std::uint8_t>::ensure(allowed);
  if (!mask || mask.ndim() != 1 || static_cast<std::size_t>(mask.size()) != bandit.num_arms())
    throw InvalidInput("allowed must hold one flag per arm (" + std::to_string(bandit.num_arms()) + ")");
  return mask;
}

const std::uint8_t* mask_data(const std::optional<InArray<std::uint8_t>>& mask) {
  return mask ? mask->data() : nullptr;
}

py::tuple decide(const Bandit& bandit, const py::object& row, const py::object& allowed) {
  const Row features = to_row(row, 1);
  const auto mask = to_mask(allowed, bandit);
  BanditChoice choice;
  {
    py::gil_scoped_release release;
    choice = bandit.decide(features.data(), features.width(), mask_data(mask));
  }
  return py::make_tuple(choice.arm, choice.propensity, choice.score);
}

py::tuple decide_batch(const Bandit& bandit, const py::object& rows, std::size_t n, const py::object& allowed) {
  const Row features = to_row(rows, 2);
  if (features.values && static_cast<std::size_t>(features.values->shape(0)) != n)
    throw InvalidInput("decide_batch got " + std::to_string(features.values->shape(0)) + " rows for n=" +
                       std::to_string(n));
  const std::size_t width = features.values ? static_cast<std::size_t>(features.values->shape(1)) : 0;
  const auto mask = to_mask(allowed, bandit);
  std::vector<BanditChoice> choices(n);
  {
    py::gil_scoped_release release;
    bandit.decide_batch(features.data(), n, width, mask_data(mask), choices.data());
  }
  py::array_t<std::int32_t> arms(n);
  py::array_t<double> propensities(n), scores(n);
  for (std::size_t i = 0; i < n; ++i) {
    arms.mutable_at(i) = choices[i].arm;
    propensities.mutable_at(i) = choices[i].propensity;
    scores.mutable_at(i) = choices[i].score;
  }
  return py::make_tuple(arms, propensities, scores);
}

void update(Bandit& bandit, std::int32_t arm, const py::object& row, double reward, double weight) {
  const Row features = to_row(row, 1);
  py::gil_scoped_release release;
  bandit.update(arm, features.data(), features.width(), reward, weight);
}

void add_prior(Bandit& bandit, const InArray<std::int32_t>& arms, const py::object& rows,
               const InArray<double>& rewards, const InArray<double>& weights) {
  const std::size_t n = static_cast<std::size_t>(arms.size());
  const Row features = to_row(rows, 2);
  if (arms.ndim() != 1 || rewards.ndim() != 1 || weights.ndim() != 1 || static_cast<std::size_t>(rewards.size()) != n ||
      static_cast<std::size_t>(weights.size()) != n ||
      (features.values && static_cast<std::size_t>(features.values->shape(0)) != n))
    throw InvalidInput("add_prior needs arms, rewards and weights of one length n and (n, features) rows");
  const std::size_t width = features.values ? static_cast<std::size_t>(features.values->shape(1)) : 0;
  py::gil_scoped_release release;
  bandit.add_prior(arms.data(), features.data(), n, width, rewards.data(), weights.data());
}

py::tuple estimate(const Bandit& bandit, const py::object& row) {
  const Row features = to_row(row, 1);
  py::array_t<double> means(bandit.num_arms()), widths(bandit.num_arms());
  double* m = means.mutable_data();
  double* w = widths.mutable_data();
  {
    py::gil_scoped_release release;
    bandit.estimate(features.data(), features.width(), m, w);
  }
  return py::make_tuple(means, widths);
}

py::array_t<double> export_stats(const Bandit& bandit, bool prior) {
  std::vector<double> stats;
  {
    py::gil_scoped_release release;
    stats = bandit.export_stats(prior);
  }
  py::array_t<double> out({bandit.num_arms(), bandit.stats_width()});
  std::copy(stats.begin(), stats.end(), out.mutable_data());
  return out;
}

void import_stats(Bandit& bandit, const InArray<double>& stats, bool prior) {
  if (stats.ndim() != 2 || static_cast<std::size_t>(stats.shape(0)) != bandit.num_arms() ||
      static_cast<std::size_t>(stats.shape(1)) != bandit.stats_width())
    throw InvalidInput("statistics must be an array of shape (" + std::to_string(bandit.num_arms()) + ", " +
                       std::to_string(bandit.stats_width()) + ")");
  std::vector<double> values(stats.data(), stats.data() + stats.size());
  py::gil_scoped_release release;
  bandit.import_stats(values, prior);
}

std::unique_ptr<Bandit> make_bandit(const std::string& algorithm, std::size_t num_arms, std::size_t num_features,
                                    double explore, double alpha, double decay, double ridge, std::uint64_t seed,
                                    bool log_features, double clip, std::vector<double> center,
                                    std::vector<double> scale) {
  BanditConfig config;
  config.algorithm = static_cast<BanditAlgorithm>(algorithm_index(algorithm));
  config.num_arms = num_arms;
  config.num_features = num_features;
  config.explore = explore;
  config.alpha = alpha;
  config.decay = decay;
  config.ridge = ridge;
  config.seed = seed;
  config.log_features = log_features;
  config.clip = clip;
  config.center = std::move(center);
  config.scale = std::move(scale);
  return std::make_unique<Bandit>(std::move(config));
}

}  // namespace

void bind_bandit(py::module_& m) {
  py::tuple names(kAlgorithmNames.size());
  for (std::size_t i = 0; i < kAlgorithmNames.size(); ++i)
    names[i] = py::str(kAlgorithmNames[i].data(), kAlgorithmNames[i].size());
  m.attr("BANDIT_ALGORITHMS") = names;

  py::class_<Bandit>(m, "Bandit", "An online bandit over K arms (see csrc/bandit.hpp).")
      .def(py::init(&make_bandit), py::arg("algorithm"), py::arg("num_arms"), py::arg("num_features"),
           py::arg("explore"), py::arg("alpha"), py::arg("decay"), py::arg("ridge"), py::arg("seed"),
           py::arg("log_features"), py::arg("clip"), py::arg("center"), py::arg("scale"))
      .def_property_readonly("num_arms", &Bandit::num_arms)
      .def_property_readonly("num_features", &Bandit::num_features)
      .def_property_readonly("contextual", &Bandit::contextual)
      .def_property_readonly("stats_width", &Bandit::stats_width)
      .def("decide", &decide, py::arg("row"), py::arg("allowed") = py::none())
      .def("decide_batch", &decide_batch, py::arg("rows"), py::arg("n"), py::arg("allowed") = py::none())
      .def("update", &update, py::arg("arm"), py::arg("row"), py::arg("reward"), py::arg("weight") = 1.0)
      .def("add_prior", &add_prior, py::arg("arms"), py::arg("rows"), py::arg("rewards"), py::arg("weights"))
      .def("estimate", &estimate, py::arg("row"))
      .def("merge", &Bandit::merge, py::arg("other"), py::call_guard<py::gil_scoped_release>())
      .def("export_stats", &export_stats, py::arg("prior"))
      .def("import_stats", &import_stats, py::arg("stats"), py::arg("prior"));
}

}  // namespace fastroute::binding
