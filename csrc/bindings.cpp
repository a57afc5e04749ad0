// The only file that knows Python: it converts arguments, checks buffers at
// the boundary, releases the GIL around native work and converts back.
#include <pybind11/pybind11.h>
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <bit>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "analyzer.hpp"
#include "errors.hpp"
#include "features.hpp"
#include "scorer.hpp"
#include "magic.hpp"

namespace py = pybind11;
using namespace fastroute;

namespace {

// Maps core exceptions to the Python classes in fastroute.errors, looked up
// once at import (that module imports nothing native, so no cycle).
void register_error_translation() {
  PYBIND11_CONSTINIT static py::gil_safe_call_once_and_store<py::object> errors;
  errors.call_once_and_store_result([] { return py::module_::import("fastroute.errors"); });
  py::register_exception_translator([](std::exception_ptr p) {
    auto raise = [](const char* cls, const std::exception& e) {
      py::object type = errors.get_stored().attr(cls);
      PyErr_SetString(type.ptr(), e.what());
    };
    try {
      if (p) std::rethrow_exception(p);
    } catch (const CorruptFile& e) {
      raise("CorruptFile", e);
    } catch (const InvalidInput& e) {
      raise("InvalidInput", e);
    } catch (const UnsupportedInput& e) {
      raise("UnsupportedInput", e);
    }
  });
}

template <std::size_t N>
py::tuple names_tuple(const std::array<std::string_view, N>& names) {
  py::tuple out(N);
  for (std::size_t i = 0; i < N; ++i) out[i] = py::str(names[i].data(), names[i].size());
  return out;
}

// ---- scorer helpers ----

template <typename T>
using InArray = py::array_t<T, py::array::c_style | py::array::forcecast>;

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

// One row is scored with the GIL held: releasing and re-taking it would cost
// more than the scoring (a few hundred nanoseconds at most).
py::tuple score_row(const Scorer& scorer, const py::array& row) {
  std::size_t n = 0;
  const float* data = checked_rows(row, scorer, 1, &n);
  std::int32_t model = 0, reason = 0;
  float score = 0, margin = 0;
  scorer.score_rows(data, 1, {&model, &score, &margin, &reason});
  return py::make_tuple(model, score, margin, reason);
}

// Batches below this many rows are scored with the GIL held, for the same reason.
constexpr std::size_t kReleaseGilFromRows = 64;

py::tuple score_batch(const Scorer& scorer, const py::array& rows, unsigned threads) {
  std::size_t n = 0;
  const float* data = checked_rows(rows, scorer, 2, &n);
  py::array_t<std::int32_t> model(n), reason(n);
  py::array_t<float> score(n), margin(n);
  ScoreOutput out{model.mutable_data(), score.mutable_data(), margin.mutable_data(), reason.mutable_data()};
  {
    std::optional<py::gil_scoped_release> release;
    if (n >= kReleaseGilFromRows) release.emplace();
    scorer.score_batch(data, n, out, threads);
  }
  return py::make_tuple(model, score, margin, reason);
}

py::array_t<std::int32_t> predict_models(const Scorer& scorer, const py::array& rows, unsigned threads) {
  std::size_t n = 0;
  const float* data = checked_rows(rows, scorer, 2, &n);
  py::array_t<std::int32_t> model(n);
  ScoreOutput out{model.mutable_data(), nullptr, nullptr, nullptr};
  {
    std::optional<py::gil_scoped_release> release;
    if (n >= kReleaseGilFromRows) release.emplace();
    scorer.score_batch(data, n, out, threads);
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

std::vector<std::uint32_t> forest_path(const ForestScorer& forest, const py::array& row, std::size_t tree) {
  std::size_t n = 0;
  return forest.path(checked_rows(row, forest, 1, &n), tree);
}

void bind_scorer(py::module_& m) {
  py::class_<Scorer, std::shared_ptr<Scorer>>(m, "Scorer", "A compiled, immutable routing policy.")
      .def_property_readonly("num_features", &Scorer::num_features)
      .def_property_readonly("num_models", &Scorer::num_models)
      .def("score", &score_row, py::arg("row"), "(model, score, margin, reason) for one float32 row.")
      .def("score_batch", &score_batch, py::arg("rows"), py::arg("threads") = 0,
           "(model, score, margin, reason) arrays for an (n, F) float32 matrix.")
      .def("predict", &predict_models, py::arg("rows"), py::arg("threads") = 0,
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
      .def("path", &forest_path, py::arg("row"), py::arg("tree") = 0);
  py::class_<ThresholdScorer, Scorer, std::shared_ptr<ThresholdScorer>>(m, "ThresholdScorer")
      .def(py::init([](std::size_t num_features, std::uint32_t feature, const InArray<float>& cuts,
                       std::int32_t missing_model) {
             return std::make_shared<ThresholdScorer>(num_features, feature, to_vector(cuts), missing_model);
           }),
           py::arg("num_features"), py::arg("feature"), py::arg("cuts"), py::arg("missing_model"));
}

// ---- Analyzer -----------------------------------------------------------------

// Inputs at least this large (elements or bytes) are analysed without the GIL;
// below it, releasing and re-taking the GIL costs more than the work.
constexpr std::int64_t kReleaseGilFrom = 1 << 14;

// A held buffer export (bytearray, memoryview): the exporter cannot resize
// while we read it. Released with the GIL held, by the destructor.
class HeldBuffer {
 public:
  explicit HeldBuffer(py::handle object) {
    if (PyObject_GetBuffer(object.ptr(), &view_, PyBUF_C_CONTIGUOUS) != 0) {
      PyErr_Clear();
      throw UnsupportedInput("cannot read " + std::string(py::str(py::type::of(object).attr("__name__"))) +
                             " as contiguous bytes (pass bytes or a C-contiguous memoryview)");
    }
  }
  HeldBuffer(const HeldBuffer&) = delete;
  HeldBuffer& operator=(const HeldBuffer&) = delete;
  ~HeldBuffer() { PyBuffer_Release(&view_); }

  std::span<const std::byte> bytes() const {
    return {static_cast<const std::byte*>(view_.buf), static_cast<std::size_t>(view_.len)};
  }

 private:
  Py_buffer view_{};
};

DtypeKind dtype_kind(const py::dtype& dtype) {
  switch (dtype.kind()) {
    case 'b': return DtypeKind::kBool;
    case 'i': return DtypeKind::kInt;
    case 'u': return DtypeKind::kUInt;
    case 'f': return DtypeKind::kFloat;
    default:
      throw UnsupportedInput("arrays of dtype " + std::string(py::str(dtype)) +
                             " are not supported (use a bool, integer or float dtype)");
  }
}

// Checks dtype, rank, shape and strides; no copy whatever the layout.
ArrayView array_view(const py::array& array) {
  const py::dtype dtype = array.dtype();
  ArrayView view;
  view.kind = dtype_kind(dtype);
  view.itemsize = static_cast<int>(dtype.itemsize());
  const char order = dtype.byteorder();
  constexpr char kNative = std::endian::native == std::endian::little ? '<' : '>';
  view.byteswapped = !(order == '=' || order == '|' || order == kNative);
  if (array.ndim() > kMaxDims) throw InvalidInput("array rank " + std::to_string(array.ndim()) + " is over 64");
  view.ndim = static_cast<int>(array.ndim());
  for (int d = 0; d < view.ndim; ++d) {
    view.shape[d] = array.shape(d);
    view.strides[d] = array.strides(d);
  }
  view.data = static_cast<const std::byte*>(array.data());
  return view;
}

std::string_view str_utf8(py::handle text) {
  Py_ssize_t size = 0;
  const char* utf8 = PyUnicode_AsUTF8AndSize(text.ptr(), &size);
  if (utf8 == nullptr) {
    PyErr_Clear();
    throw InvalidInput("str is not valid Unicode (it holds a lone surrogate) and cannot be encoded as UTF-8");
  }
  return {utf8, static_cast<std::size_t>(size)};
}

// Converts one Python input; `held` keeps buffer exports alive.
Input to_input(py::handle x, std::vector<std::unique_ptr<HeldBuffer>>& held) {
  if (py::isinstance<py::array>(x)) return array_view(py::reinterpret_borrow<py::array>(x));
  if (PyUnicode_Check(x.ptr())) return TextInput{str_utf8(x)};
  if (PyBytes_Check(x.ptr())) {
    return BytesInput{{reinterpret_cast<const std::byte*>(PyBytes_AS_STRING(x.ptr())),
                       static_cast<std::size_t>(PyBytes_GET_SIZE(x.ptr()))}};
  }
  if (PyByteArray_Check(x.ptr()) || PyMemoryView_Check(x.ptr())) {
    held.push_back(std::make_unique<HeldBuffer>(x));
    return BytesInput{held.back()->bytes()};
  }
  throw UnsupportedInput("cannot analyse an object of type '" + std::string(py::str(py::type::of(x).attr("__name__"))) +
                         "' (pass a numpy array, str, bytes, bytearray or memoryview)");
}

std::int64_t input_work(const ArrayView& a) {
  std::int64_t count = 1;
  for (int d = 0; d < a.ndim && count < kReleaseGilFrom; ++d) count *= a.shape[d];
  return count;
}

std::int64_t input_work(const Input& input) {
  if (const auto* a = std::get_if<ArrayView>(&input)) return input_work(*a);
  if (const auto* t = std::get_if<TextInput>(&input)) return static_cast<std::int64_t>(t->utf8.size());
  return static_cast<std::int64_t>(std::get<BytesInput>(input).bytes.size());
}

Analysis analyze_py(py::handle x, py::handle hint_arg) {
  Hint hint = Hint::kAuto;
  if (!hint_arg.is_none()) {
    if (!PyUnicode_Check(hint_arg.ptr())) throw InvalidInput("hint must be a str or None, not " + std::string(py::repr(hint_arg)));
    hint = parse_hint(str_utf8(hint_arg));
  }
  if (py::isinstance<py::array>(x)) {  // the hot path: no variant, no copies
    const ArrayView view = array_view(py::reinterpret_borrow<py::array>(x));
    if (input_work(view) < kReleaseGilFrom) return analyze_array(view, hint);
    py::gil_scoped_release release;
    return analyze_array(view, hint);
  }
  std::vector<std::unique_ptr<HeldBuffer>> held;
  const Input input = to_input(x, held);
  if (input_work(input) < kReleaseGilFrom) return analyze(input, hint);
  py::gil_scoped_release release;
  return analyze(input, hint);
}

py::tuple analyze_batch_py(py::handle xs) {
  if (PyUnicode_Check(xs.ptr()) || PyBytes_Check(xs.ptr()) || PyByteArray_Check(xs.ptr())) {
    throw UnsupportedInput("analyze_batch takes a 2-D array or a sequence of inputs, not a single " +
                           std::string(py::str(py::type::of(xs).attr("__name__"))));
  }
  if (py::isinstance<py::array>(xs)) {
    const ArrayView matrix = array_view(py::reinterpret_borrow<py::array>(xs));
    const py::ssize_t rows = matrix.ndim == 2 ? matrix.shape[0] : 0;
    py::array_t<float> features({rows, static_cast<py::ssize_t>(kNumFeatures)});
    py::array_t<std::uint8_t> codes(rows);
    {
      py::gil_scoped_release release;
      analyze_rows(matrix, {features.mutable_data(), codes.mutable_data()});
    }
    return py::make_tuple(features, codes);
  }
  if (!PySequence_Check(xs.ptr())) {
    throw UnsupportedInput("analyze_batch takes a 2-D array or a sequence of inputs, not '" +
                           std::string(py::str(py::type::of(xs).attr("__name__"))) + "'");
  }
  const py::list items(py::reinterpret_borrow<py::object>(xs));  // owns the items while the GIL is released
  std::vector<std::unique_ptr<HeldBuffer>> held;
  std::vector<Input> inputs;
  inputs.reserve(items.size());
  for (std::size_t i = 0; i < items.size(); ++i) {
    try {
      inputs.push_back(to_input(items[i], held));
    } catch (const std::invalid_argument&) {
      rethrow_with_context(std::current_exception(), "item " + std::to_string(i) + ": ");
    }
  }
  const auto n = static_cast<py::ssize_t>(inputs.size());
  py::array_t<float> features({n, static_cast<py::ssize_t>(kNumFeatures)});
  py::array_t<std::uint8_t> codes(n);
  {
    py::gil_scoped_release release;
    analyze_items(inputs, {features.mutable_data(), codes.mutable_data()});
  }
  return py::make_tuple(features, codes);
}

// A read-only float32 view of the Analysis' features, kept alive by `self`.
py::array features_view(py::object self) {
  const Analysis& analysis = self.cast<const Analysis&>();
  py::array_t<float> view({static_cast<py::ssize_t>(kNumFeatures)}, {static_cast<py::ssize_t>(sizeof(float))},
                          analysis.features.data(), self);
  py::detail::array_proxy(view.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  return view;
}

Analysis analysis_from_row(const py::array_t<float, py::array::c_style | py::array::forcecast>& row) {
  if (row.ndim() != 1 || row.shape(0) != kNumFeatures) {
    throw InvalidInput("a feature row has " + std::to_string(kNumFeatures) + " values, got shape " +
                       std::string(py::str(py::tuple(py::cast(std::vector<py::ssize_t>(row.shape(), row.shape() + row.ndim()))))));
  }
  FeatureVector features;
  std::copy_n(row.data(), kNumFeatures, features.begin());
  return analysis_from_features(features);
}

float feature_by_name(const Analysis& analysis, std::string_view name) {
  for (std::size_t k = 0; k < kNumFeatures; ++k) {
    if (kFeatureNames[k] == name) return analysis.features[k];
  }
  throw py::key_error("no feature named '" + std::string(name) + "' (see fastroute.FEATURE_NAMES)");
}

void bind_analyzer(py::module_& m) {
  m.attr("MIMES") = names_tuple(kMimeNames);
  m.attr("SOURCES") = names_tuple(kSourceNames);
  m.attr("DTYPE_KINDS") = names_tuple(kDtypeKindNames);

  py::class_<Analysis>(m, "Analysis", "One input's modality, mime type and feature vector (see fastroute.analyze).")
      .def(py::init(&analysis_from_row), py::arg("features"),
           "Rebuilds an Analysis from a feature row (FEATURE_NAMES order), as analyze_batch returns them.")
      .def_property_readonly(
          "modality", [](const Analysis& a) { return kModalityNames[static_cast<std::size_t>(a.modality)]; },
          "The modality name, one of MODALITIES.")
      .def_property_readonly(
          "modality_code", [](const Analysis& a) { return static_cast<int>(a.modality); }, "Index into MODALITIES.")
      .def_property_readonly(
          "mime", [](const Analysis& a) -> py::object {
            if (a.mime.empty()) return py::none();
            return py::str(a.mime.data(), a.mime.size());
          },
          "The file's mime type for bytes inputs, else None.")
      .def_property_readonly("features", &features_view, "Read-only float32 vector in FEATURE_NAMES order; NaN = missing.")
      .def("__getitem__", &feature_by_name, py::arg("name"), "One feature by name (NaN when missing).")
      .def("explain", &explain, "A multi-line listing of every present feature, codes decoded.")
      .def("__repr__", [](const Analysis& a) { return "Analysis(" + summarize(a) + ")"; });

  m.def("analyze", &analyze_py, py::arg("x"), py::arg("hint") = py::none(),
        "Analyse one input: a numpy array, str, bytes, bytearray or memoryview.\n\n"
        "hint ('tabular', 'image', 'audio') overrides the array modality heuristics. Returns an Analysis\n"
        "with .modality (str), .mime (str or None), .features (read-only float32 vector in FEATURE_NAMES\n"
        "order, NaN = missing), analysis[name] and .explain(). Raises InvalidInput, UnsupportedInput or\n"
        "CorruptFile (all FastrouteError); see the fastroute.analyzer module docstring.");
  m.def("analyze_batch", &analyze_batch_py, py::arg("xs"),
        "Analyses a 2-D array's rows or a sequence of inputs; returns (features (n, F) float32, modality codes (n,) uint8).");
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "fastroute's C++ core (private: use the fastroute package).";
  register_error_translation();

  m.attr("FEATURE_NAMES") = names_tuple(kFeatureNames);
  m.attr("MODALITIES") = names_tuple(kModalityNames);
  m.attr("SCRIPTS") = names_tuple(kScriptNames);

  // Baseline for benchmarks: the cost of crossing the binding and nothing else.
  m.def("noop", [](py::handle) {}, py::arg("x"));

  bind_scorer(m);
  bind_analyzer(m);
}
