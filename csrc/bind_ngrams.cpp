// Binding of the n-gram hasher (ngrams.hpp): texts are str (UTF-8 from
// CPython's cache) or bytes-like UTF-8, held (str references, buffer views)
// while the GIL is released; the sparse rows come back as numpy arrays that
// own the hasher's vectors, without a copy.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bind_text.hpp"
#include "binding.hpp"
#include "errors.hpp"
#include "ngrams.hpp"

namespace fastroute::binding {

namespace {

// Texts at least this long are hashed without the GIL (below, releasing it
// costs more than the work).
constexpr std::size_t kReleaseGilBytes = std::size_t{1} << 14;

// Hands a vector to numpy: the array's base capsule owns it.
template <typename T>
py::array_t<T> owning_array(std::vector<T>&& values) {
  auto owner = std::make_unique<std::vector<T>>(std::move(values));
  const auto size = static_cast<py::ssize_t>(owner->size());
  const T* data = owner->data();
  py::capsule base(owner.get(), [](void* p) { std::unique_ptr<std::vector<T>>(static_cast<std::vector<T>*>(p)); });
  owner.release();  // now owned by the capsule
  return py::array_t<T>(size, data, base);
}

py::tuple hash_one(const NgramHasher& hasher, py::handle text) {
  HeldText held = hold_text(text, "");
  SparseRows row;
  if (held.utf8.size() >= kReleaseGilBytes) {
    py::gil_scoped_release release;
    hasher.hash_into(held.utf8, row);
  } else {
    hasher.hash_into(held.utf8, row);
  }
  return py::make_tuple(owning_array(std::move(row.indices)), owning_array(std::move(row.values)));
}

py::tuple hash_batch(const NgramHasher& hasher, py::handle texts, unsigned threads) {
  if (PyUnicode_Check(texts.ptr()) || PyBytes_Check(texts.ptr()))
    throw UnsupportedInput("expected a sequence of texts, got a single " +
                           std::string(PyUnicode_Check(texts.ptr()) ? "str" : "bytes") + ": use hash() for one text");
  // A list of our own: the caller's sequence may change while the GIL is released.
  const py::list items = py::reinterpret_steal<py::list>(PySequence_List(texts.ptr()));
  if (!items) throw py::error_already_set();
  std::vector<HeldText> held;
  std::vector<std::string_view> views;
  held.reserve(items.size());
  views.reserve(items.size());
  for (std::size_t i = 0; i < items.size(); ++i) {
    held.push_back(hold_text(items[i], "item " + std::to_string(i) + ": "));
    views.push_back(held.back().utf8);
  }
  SparseRows rows;
  {
    py::gil_scoped_release release;
    rows = hasher.hash_batch(views, threads);
  }
  return py::make_tuple(owning_array(std::move(rows.indptr)), owning_array(std::move(rows.indices)),
                        owning_array(std::move(rows.values)));
}

NgramOptions options_from(const std::string& unit, int min_n, int max_n, std::int64_t n_features, bool lowercase,
                          bool alternate_sign, bool binary, bool sublinear_tf, const std::optional<std::string>& norm) {
  NgramOptions options;
  if (unit == "word") {
    options.unit = NgramUnit::kWord;
  } else if (unit == "char_wb") {
    options.unit = NgramUnit::kCharWb;
  } else {
    throw InvalidInput("analyzer must be 'word' or 'char_wb', got '" + unit + "'");
  }
  if (!norm) {
    options.norm = NgramNorm::kNone;
  } else if (*norm == "l2") {
    options.norm = NgramNorm::kL2;
  } else if (*norm == "l1") {
    options.norm = NgramNorm::kL1;
  } else {
    throw InvalidInput("norm must be 'l2', 'l1' or None, got '" + *norm + "'");
  }
  options.min_n = min_n;
  options.max_n = max_n;
  options.n_features = n_features;
  options.lowercase = lowercase;
  options.alternate_sign = alternate_sign;
  options.binary = binary;
  options.sublinear_tf = sublinear_tf;
  return options;
}

}  // namespace

HeldText hold_text(py::handle text, const std::string& where) {
  if (PyUnicode_Check(text.ptr())) {
    Py_ssize_t size = 0;
    const char* data = PyUnicode_AsUTF8AndSize(text.ptr(), &size);
    if (data == nullptr) {
      PyErr_Clear();
      throw InvalidInput(where + "str is not encodable as UTF-8 (a lone surrogate?)");
    }
    return {std::string_view(data, static_cast<std::size_t>(size)), std::nullopt};
  }
  if (PyBytes_Check(text.ptr()) || PyByteArray_Check(text.ptr()) || PyMemoryView_Check(text.ptr())) {
    py::buffer_info info = py::reinterpret_borrow<py::buffer>(text).request();
    if (info.itemsize != 1 || info.ndim != 1 || info.strides[0] != 1)
      throw UnsupportedInput(where + "a bytes-like text must be contiguous bytes (itemsize 1, one dimension)");
    std::string_view utf8(static_cast<const char*>(info.ptr), static_cast<std::size_t>(info.size));
    return {utf8, std::move(info)};
  }
  throw UnsupportedInput(where + "expected a str or UTF-8 bytes, got " +
                         std::string(py::str(py::type::handle_of(text).attr("__name__"))) +
                         ": route other modalities to their own models");
}

void bind_ngrams(py::module_& m) {
  m.attr("HASH_FEATURES_MIN") = kMinHashFeatures;
  m.attr("HASH_FEATURES_MAX") = kMaxHashFeatures;
  m.attr("NGRAM_MAX_N") = kMaxNgramLength;
  py::class_<NgramHasher, std::shared_ptr<NgramHasher>>(m, "NgramHasher",
                                                        "Hashed n-gram features, as sklearn's HashingVectorizer.")
      .def(py::init([](const std::string& analyzer, int min_n, int max_n, std::int64_t n_features, bool lowercase,
                       bool alternate_sign, bool binary, bool sublinear_tf, const std::optional<std::string>& norm) {
             return std::make_shared<NgramHasher>(
                 options_from(analyzer, min_n, max_n, n_features, lowercase, alternate_sign, binary, sublinear_tf, norm));
           }),
           py::arg("analyzer"), py::arg("min_n"), py::arg("max_n"), py::arg("n_features"), py::arg("lowercase"),
           py::arg("alternate_sign"), py::arg("binary"), py::arg("sublinear_tf"), py::arg("norm"))
      .def("hash", &hash_one, py::arg("text"), "One text -> (indices int32, values float64), indices increasing.")
      .def("hash_batch", &hash_batch, py::arg("texts"), py::arg("threads") = 0,
           "Texts -> CSR (indptr int64, indices int32, values float64), GIL released.");
  m.def("murmurhash3", [](py::bytes data) { return NgramHasher::murmurhash3(std::string_view(data)); },
        py::arg("data"), "MurmurHash3_x86_32 with seed 0, signed (sklearn's murmurhash3_32).");
}

}  // namespace fastroute::binding
