// Binding of the linear scorer (linear.hpp): weights are checked at
// construction; one text is hashed and scored in one call (route_text), CSR
// batches are scored without the GIL.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <memory>
#include <string>
#include <vector>

#include "bind_text.hpp"
#include "errors.hpp"
#include "linear.hpp"
#include "ngrams.hpp"

namespace fastroute::binding {

namespace py = pybind11;

namespace {

template <typename T>
using InArray = py::array_t<T, py::array::c_style | py::array::forcecast>;

std::vector<float> floats(const InArray<float>& a) { return std::vector<float>(a.data(), a.data() + a.size()); }

// The dense row of one input: dense() float32 values, or None when dense() == 0.
const float* dense_row(const LinearScorer& scorer, const py::object& dense, InArray<float>& held) {
  if (scorer.dense() == 0) {
    if (!dense.is_none() && py::len(dense) != 0)
      throw InvalidInput("this policy reads no dense features, got " + std::to_string(py::len(dense)));
    return nullptr;
  }
  if (dense.is_none()) throw InvalidInput("this policy reads " + std::to_string(scorer.dense()) + " dense features, got None");
  held = InArray<float>::ensure(dense);
  if (!held || held.ndim() != 1 || static_cast<std::size_t>(held.size()) != scorer.dense())
    throw InvalidInput("dense features must be " + std::to_string(scorer.dense()) + " numbers");
  return held.data();
}

py::tuple route_text(const LinearScorer& scorer, const NgramHasher& hasher, py::handle text, const py::object& dense) {
  if (static_cast<std::size_t>(hasher.options().n_features) != scorer.sparse())
    throw InvalidInput("the hasher has " + std::to_string(hasher.options().n_features) + " features, the scorer " +
                       std::to_string(scorer.sparse()));
  InArray<float> held_dense;
  const float* row = dense_row(scorer, dense, held_dense);
  HeldText held = hold_text(text, "");
  py::array_t<float> scores(static_cast<py::ssize_t>(scorer.models()));
  float* out = scores.mutable_data();
  std::size_t best;
  {
    std::optional<py::gil_scoped_release> release;
    if (held.utf8.size() >= (std::size_t{1} << 14)) release.emplace();
    static thread_local SparseRows sparse;  // reused: no allocation per prompt once warm
    sparse.indptr.assign(1, 0);
    sparse.indices.clear();
    sparse.values.clear();
    hasher.hash_into(held.utf8, sparse);
    best = scorer.score(row, sparse.indices, sparse.values, out);
  }
  return py::make_tuple(best, scores);
}

py::tuple score_csr(const LinearScorer& scorer, const InArray<std::int64_t>& indptr, const InArray<std::int32_t>& indices,
                    const InArray<double>& values, const py::object& dense) {
  if (indptr.ndim() != 1 || indptr.size() < 1) throw InvalidInput("indptr must be 1-D with at least one entry");
  const auto n = static_cast<std::size_t>(indptr.size() - 1);
  const std::int64_t* ptr = indptr.data();
  if (indices.size() != values.size()) throw InvalidInput("indices and values differ in length");
  if (ptr[0] != 0) throw InvalidInput("indptr must start at 0");
  for (std::size_t r = 0; r < n; ++r) {
    if (ptr[r + 1] < ptr[r] || ptr[r + 1] > indices.size()) throw InvalidInput("indptr must ascend within the data");
  }
  const float* dense_rows = nullptr;
  InArray<float> held;
  if (scorer.dense() > 0) {
    if (dense.is_none()) throw InvalidInput("this policy reads " + std::to_string(scorer.dense()) + " dense features");
    held = InArray<float>::ensure(dense);
    if (!held || held.ndim() != 2 || static_cast<std::size_t>(held.shape(0)) != n ||
        static_cast<std::size_t>(held.shape(1)) != scorer.dense())
      throw InvalidInput("dense features must have shape (" + std::to_string(n) + ", " + std::to_string(scorer.dense()) + ")");
    dense_rows = held.data();
  }
  py::array_t<float> scores({static_cast<py::ssize_t>(n), static_cast<py::ssize_t>(scorer.models())});
  py::array_t<std::int32_t> best(static_cast<py::ssize_t>(n));
  float* scores_out = scores.mutable_data();
  std::int32_t* best_out = best.mutable_data();
  {
    py::gil_scoped_release release;
    scorer.score_batch(dense_rows, n, ptr, indices.data(), values.data(), scores_out, best_out);
  }
  return py::make_tuple(best, scores);
}

}  // namespace

void bind_linear(py::module_& m) {
  py::class_<LinearScorer, std::shared_ptr<LinearScorer>>(m, "LinearScorer",
                                                          "One linear function per model over dense + sparse features.")
      .def(py::init([](std::size_t models, std::size_t dense, std::size_t sparse, const InArray<float>& dense_weights,
                       const InArray<float>& dense_mean, const InArray<float>& dense_scale,
                       const InArray<float>& sparse_weights, const InArray<float>& bias) {
             LinearWeights w{models, dense, sparse, floats(dense_weights), floats(dense_mean), floats(dense_scale),
                             floats(sparse_weights), floats(bias)};
             return std::make_shared<LinearScorer>(std::move(w));
           }),
           py::arg("models"), py::arg("dense"), py::arg("sparse"), py::arg("dense_weights"), py::arg("dense_mean"),
           py::arg("dense_scale"), py::arg("sparse_weights"), py::arg("bias"))
      .def_property_readonly("models", &LinearScorer::models)
      .def_property_readonly("dense", &LinearScorer::dense)
      .def_property_readonly("sparse", &LinearScorer::sparse)
      .def("route_text", &route_text, py::arg("hasher"), py::arg("text"), py::arg("dense") = py::none(),
           "Hash one text and score it: (best index, float32 scores).")
      .def("score_csr", &score_csr, py::arg("indptr"), py::arg("indices"), py::arg("values"),
           py::arg("dense") = py::none(), "Score CSR rows: (best int32 (n,), float32 scores (n, models)).");
}

}  // namespace fastroute::binding
