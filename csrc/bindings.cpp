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
#include "dispatcher.hpp"
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
    } catch (const Closed& e) {
      raise("RouterClosed", e);
    } catch (const Exhausted& e) {
      raise("Overloaded", e);
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

// The mask to score with: every model when none is given.
const ModelMask& checked_mask(const ModelMask* mask, const Scorer& scorer) {
  static const ModelMask kEveryModel;
  if (mask == nullptr) return kEveryModel;
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
py::tuple score_row(const Scorer& scorer, const py::array& row, const ModelMask* mask) {
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
py::tuple score_batch(const Scorer& scorer, const py::array& rows, unsigned threads, const ModelMask* mask) {
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
                                         const ModelMask* mask) {
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

std::vector<std::uint32_t> forest_path(const ForestScorer& forest, const py::array& row, std::size_t tree) {
  std::size_t n = 0;
  return forest.path(checked_rows(row, forest, 1, &n), tree);
}

void bind_scorer(py::module_& m) {
  m.attr("NO_MODEL") = kNoModel;
  py::class_<ModelMask, std::shared_ptr<ModelMask>>(
      m, "ModelMask",
      "Which models each row may use: a (groups, models) array of flags; one group applies to every row, "
      "several are indexed by the row's modality code (a row of no known modality may use no model).")
      .def(py::init(&make_mask), py::arg("flags"))
      .def_property_readonly("num_models", &ModelMask::num_models);
  py::class_<Scorer, std::shared_ptr<Scorer>>(m, "Scorer", "A compiled, immutable routing policy.")
      .def_property_readonly("num_features", &Scorer::num_features)
      .def_property_readonly("num_models", &Scorer::num_models)
      .def("score", &score_row, py::arg("row"), py::arg("mask") = nullptr,
           "(model, score, margin, reason) for one float32 row; model is NO_MODEL when the mask allows none.")
      .def("score_batch", &score_batch, py::arg("rows"), py::arg("threads") = 0, py::arg("mask") = nullptr,
           "(model, score, margin, reason) arrays for an (n, F) float32 matrix.")
      .def("predict", &predict_models, py::arg("rows"), py::arg("threads") = 0, py::arg("mask") = nullptr,
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

// ---- The Analysis Python type ----------------------------------------------------
// A plain CPython object holding the C++ Analysis inline. A pybind11 class
// instance costs ~300 ns to create (holder allocation, instance registry):
// four times the analysis of a small array.
struct AnalysisObject {
  PyObject_HEAD
  Analysis value;
};
static_assert(std::is_trivially_copyable_v<Analysis> && std::is_trivially_destructible_v<Analysis>);

PyTypeObject* analysis_type = nullptr;  // created at import; the module owns it

const Analysis& analysis_of(PyObject* self) { return reinterpret_cast<AnalysisObject*>(self)->value; }

py::object wrap(const Analysis& analysis) {
  PyObject* self = analysis_type->tp_alloc(analysis_type, 0);
  if (self == nullptr) throw py::error_already_set();
  new (&reinterpret_cast<AnalysisObject*>(self)->value) Analysis(analysis);
  return py::reinterpret_steal<py::object>(self);
}

// Runs `body` (returning a py::object) for a CPython slot: C++ exceptions
// become the Python errors the module's translators name.
template <class Body>
PyObject* guarded(Body&& body) noexcept {
  try {
    return body().release().ptr();
  } catch (py::error_already_set& e) {
    e.restore();
  } catch (...) {
    py::detail::try_translate_exceptions();
  }
  return nullptr;
}

Analysis analysis_from_row(py::handle row_arg) {
  const auto row = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(row_arg);
  if (!row || row.ndim() != 1 || row.shape(0) != kNumFeatures) {
    throw InvalidInput("a feature row has " + std::to_string(kNumFeatures) + " values, got " +
                       std::string(py::repr(row_arg)).substr(0, 80));
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

py::str to_str(std::string_view text) { return {text.data(), text.size()}; }

PyGetSetDef kAnalysisGetters[] = {
    {"modality",
     [](PyObject* self, void*) {
       return guarded([&] { return to_str(kModalityNames[static_cast<std::size_t>(analysis_of(self).modality)]); });
     },
     nullptr, "The modality name, one of MODALITIES.", nullptr},
    {"modality_code",
     [](PyObject* self, void*) { return guarded([&] { return py::int_(static_cast<int>(analysis_of(self).modality)); }); },
     nullptr, "Index into MODALITIES.", nullptr},
    {"mime",
     [](PyObject* self, void*) {
       return guarded([&]() -> py::object {
         const std::string_view mime = analysis_of(self).mime;
         return mime.empty() ? py::object(py::none()) : py::object(to_str(mime));
       });
     },
     nullptr, "The file's mime type for bytes inputs, else None.", nullptr},
    {"features",
     [](PyObject* self, void*) {
       return guarded([&] {  // a read-only view kept alive by self
         py::array_t<float> view({static_cast<py::ssize_t>(kNumFeatures)}, {static_cast<py::ssize_t>(sizeof(float))},
                                 analysis_of(self).features.data(), py::handle(self));
         py::detail::array_proxy(view.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
         return view;
       });
     },
     nullptr, "Read-only float32 vector in FEATURE_NAMES order; NaN = missing.", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

PyMethodDef kAnalysisMethods[] = {
    {"explain", [](PyObject* self, PyObject*) { return guarded([&] { return py::str(explain(analysis_of(self))); }); },
     METH_NOARGS, "A multi-line listing of every present feature, codes decoded."},
    {nullptr, nullptr, 0, nullptr},
};

PyType_Slot kAnalysisSlots[] = {
    {Py_tp_doc, const_cast<char*>("Analysis(features)\n--\n\nOne input's modality, mime type and feature vector "
                                  "(made by fastroute.analyze; Analysis(row) rebuilds one from a feature row).")},
    {Py_tp_new, reinterpret_cast<void*>(+[](PyTypeObject*, PyObject* args, PyObject* kwargs) {
       return guarded([&] {
         PyObject* row = nullptr;
         static const char* names[] = {"features", nullptr};
         if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O:Analysis", const_cast<char**>(names), &row)) {
           throw py::error_already_set();
         }
         return wrap(analysis_from_row(row));
       });
     })},
    {Py_tp_dealloc, reinterpret_cast<void*>(+[](PyObject* self) {
       PyTypeObject* type = Py_TYPE(self);
       type->tp_free(self);
       Py_DECREF(type);
     })},
    {Py_tp_repr, reinterpret_cast<void*>(+[](PyObject* self) {
       return guarded([&] { return py::str("Analysis(" + summarize(analysis_of(self)) + ")"); });
     })},
    {Py_mp_subscript, reinterpret_cast<void*>(+[](PyObject* self, PyObject* name) {
       return guarded([&] {
         if (!PyUnicode_Check(name)) throw py::key_error("feature names are str, not " + std::string(py::repr(name)));
         return py::float_(feature_by_name(analysis_of(self), str_utf8(name)));
       });
     })},
    {Py_tp_getset, kAnalysisGetters},
    {Py_tp_methods, kAnalysisMethods},
    {0, nullptr},
};

PyType_Spec kAnalysisSpec = {"fastroute.Analysis", sizeof(AnalysisObject), 0, Py_TPFLAGS_DEFAULT, kAnalysisSlots};

template <class Work>
Analysis without_gil(Work&& work) {
  py::gil_scoped_release release;
  return work();
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

py::object analyze_py(py::handle x, py::handle hint_arg) {
  Hint hint = Hint::kAuto;
  if (!hint_arg.is_none()) {
    if (!PyUnicode_Check(hint_arg.ptr())) throw InvalidInput("hint must be a str or None, not " + std::string(py::repr(hint_arg)));
    hint = parse_hint(str_utf8(hint_arg));
  }
  if (py::isinstance<py::array>(x)) {  // the hot path: no variant, no copies
    const ArrayView view = array_view(py::reinterpret_borrow<py::array>(x));
    if (input_work(view) < kReleaseGilFrom) return wrap(analyze_array(view, hint));
    return wrap(without_gil([&] { return analyze_array(view, hint); }));
  }
  std::vector<std::unique_ptr<HeldBuffer>> held;
  const Input input = to_input(x, held);
  if (input_work(input) < kReleaseGilFrom) return wrap(analyze(input, hint));
  return wrap(without_gil([&] { return analyze(input, hint); }));
}

// analyze(x, hint=None) as a METH_FASTCALL function: pybind11's generic
// dispatcher (argument records, defaults, overloads) costs more than
// analysing a small array.
PyObject* analyze_fastcall(PyObject*, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  return guarded([&] {
    if (nargs > 2) throw py::type_error("analyze() takes at most 2 positional arguments (x, hint)");
    PyObject* x = nargs > 0 ? args[0] : nullptr;
    PyObject* hint = nargs > 1 ? args[1] : Py_None;
    const Py_ssize_t keywords = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t k = 0; k < keywords; ++k) {
      const std::string_view name = str_utf8(PyTuple_GET_ITEM(kwnames, k));
      if (name == "hint" && nargs < 2) {
        hint = args[nargs + k];
      } else if (name == "x" && x == nullptr) {
        x = args[nargs + k];
      } else {
        throw py::type_error("analyze() got an unexpected or repeated keyword argument '" + std::string(name) + "'");
      }
    }
    if (x == nullptr) throw py::type_error("analyze() missing required argument 'x'");
    return analyze_py(x, hint);
  });
}

PyMethodDef kAnalyzeDef = {
    "analyze", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(analyze_fastcall)), METH_FASTCALL | METH_KEYWORDS,
    "analyze(x, hint=None)\n--\n\n"
    "Analyse one input: a numpy array, str, bytes, bytearray or memoryview.\n\n"
    "hint ('tabular', 'image', 'audio') overrides the array modality heuristics. Returns an Analysis\n"
    "with .modality (str), .mime (str or None), .features (read-only float32 vector in FEATURE_NAMES\n"
    "order, NaN = missing), analysis[name] and .explain(). Raises InvalidInput, UnsupportedInput or\n"
    "CorruptFile (all FastrouteError); see the fastroute.analyzer module docstring."};

// The (n, F) float32 output: `out` when given (checked), else a new array.
py::array_t<float> feature_matrix(py::ssize_t rows, py::handle out) {
  const auto columns = static_cast<py::ssize_t>(kNumFeatures);
  if (out.is_none()) return py::array_t<float>({rows, columns});
  const bool fits = py::isinstance<py::array_t<float>>(out) &&
                    (py::reinterpret_borrow<py::array>(out).flags() & py::array::c_style) &&
                    py::reinterpret_borrow<py::array>(out).writeable();
  auto matrix = py::reinterpret_borrow<py::array_t<float>>(out);
  if (!fits || matrix.ndim() != 2 || matrix.shape(0) != rows || matrix.shape(1) != columns) {
    throw InvalidInput("out must be a writeable C-contiguous float32 array of shape (" + std::to_string(rows) + ", " +
                       std::to_string(columns) + "), got " + std::string(py::repr(out)).substr(0, 80));
  }
  return matrix;
}

py::tuple analyze_batch_py(py::handle xs, py::handle out) {
  if (PyUnicode_Check(xs.ptr()) || PyBytes_Check(xs.ptr()) || PyByteArray_Check(xs.ptr())) {
    throw UnsupportedInput("analyze_batch takes a 2-D array or a sequence of inputs, not a single " +
                           std::string(py::str(py::type::of(xs).attr("__name__"))));
  }
  if (py::isinstance<py::array>(xs)) {
    const ArrayView matrix = array_view(py::reinterpret_borrow<py::array>(xs));
    const py::ssize_t rows = matrix.ndim == 2 ? matrix.shape[0] : 0;
    py::array_t<float> features = feature_matrix(rows, out);
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
  py::array_t<float> features = feature_matrix(n, out);
  py::array_t<std::uint8_t> codes(n);
  {
    py::gil_scoped_release release;
    analyze_items(inputs, {features.mutable_data(), codes.mutable_data()});
  }
  return py::make_tuple(features, codes);
}

void bind_analyzer(py::module_& m) {
  m.attr("MIMES") = names_tuple(kMimeNames);
  m.attr("SOURCES") = names_tuple(kSourceNames);
  m.attr("DTYPE_KINDS") = names_tuple(kDtypeKindNames);

  py::object type = py::reinterpret_steal<py::object>(PyType_FromSpec(&kAnalysisSpec));
  if (!type) throw py::error_already_set();
  analysis_type = reinterpret_cast<PyTypeObject*>(type.ptr());
  m.attr("Analysis") = type;

  py::object analyze = py::reinterpret_steal<py::object>(PyCFunction_NewEx(&kAnalyzeDef, nullptr, m.attr("__name__").ptr()));
  if (!analyze) throw py::error_already_set();
  m.attr("analyze") = analyze;
  m.def("analyze_batch", &analyze_batch_py, py::arg("xs"), py::arg("out") = py::none(),
        "Analyses a 2-D array's rows or a sequence of inputs; returns (features (n, F) float32, modality codes (n,) uint8).\n"
        "`out`, a writeable C-contiguous float32 (n, F) array, receives the features instead of a new array.");
}

// ---- dispatch ------------------------------------------------------------

// The Python batch callback, owned by the dispatcher's worker threads: the
// reference is dropped under the GIL, or leaked if the interpreter is gone.
struct PythonBatchSink {
  explicit PythonBatchSink(py::object fn) : callback(std::move(fn)) {}
  ~PythonBatchSink() {
    if (!Py_IsInitialized()) {
      callback.release();
      return;
    }
    py::gil_scoped_acquire gil;
    callback = py::object();
  }
  PythonBatchSink(const PythonBatchSink&) = delete;
  PythonBatchSink& operator=(const PythonBatchSink&) = delete;

  // The single place a worker takes the GIL: once per call, for the batch
  // and any further ones already queued on its lane (BatchStream::next).
  // Each payload's reference (taken in dispatch_push) moves into a list here.
  void operator()(BatchStream& stream) const {
    py::gil_scoped_acquire gil;
    do {
      const Batch& batch = stream.batch();
      py::list ready = steal_into_list(batch.ready);
      py::list expired = steal_into_list(batch.expired);
      py::list aborted = steal_into_list(batch.aborted);
      try {
        // The callback returns how many of the ready requests failed (for the lane's error rate).
        const py::object failures = callback(batch.lane, ready, expired, aborted);
        if (PyLong_Check(failures.ptr())) stream.report_failures(failures.cast<std::size_t>());
      } catch (py::error_already_set& e) {
        e.discard_as_unraisable("fastroute dispatch batch callback");
      }
    } while (stream.next());
  }

  static py::list steal_into_list(const std::vector<Payload>& payloads) {
    py::list out(payloads.size());
    for (std::size_t i = 0; i < payloads.size(); ++i) {
      PyList_SET_ITEM(out.ptr(), static_cast<Py_ssize_t>(i), reinterpret_cast<PyObject*>(payloads[i]));
    }
    return out;
  }

  py::object callback;
};

// Workers need the GIL to finish, so the dispatcher is destroyed without it.
struct ReleaseGilDelete {
  void operator()(Dispatcher* dispatcher) const {
    py::gil_scoped_release release;
    std::default_delete<Dispatcher>()(dispatcher);
  }
};

std::int64_t seconds_to_ns(double seconds) {
  if (!(seconds < 9.2e9)) return kNoDeadline;  // also inf
  return static_cast<std::int64_t>(seconds * 1e9);
}

// Returns the PushStatus as an int (0: accepted, 1: full, 2: closed). On
// acceptance `payload`'s reference moves to the dispatcher, which hands it to
// the sink; refused or on an exception, `payload` still drops it.
// `deadline` is absolute, on the monotonic_ns() clock (the caller computes it
// once and also checks it before the model call).
int dispatch_push(Dispatcher& dispatcher, std::size_t lane, py::object payload, bool high, std::int64_t deadline,
                  double timeout_s) {
  const Priority priority = high ? Priority::kHigh : Priority::kNormal;
  const auto handle = reinterpret_cast<Payload>(payload.ptr());
  PushStatus status = dispatcher.try_push(lane, handle, priority, deadline);
  if (status == PushStatus::kFull && timeout_s > 0) {  // only a full queue costs a GIL release
    py::gil_scoped_release release;
    status = dispatcher.push_wait(lane, handle, priority, deadline, seconds_to_ns(timeout_s));
  }
  // The caller's argument keeps the object alive even if a worker's sink has
  // already taken this reference (push_wait runs without the GIL).
  if (status == PushStatus::kAccepted) payload.release();
  return static_cast<int>(status);
}

// One load-aware decision: each candidate's load is read from its lanes
// (lock-free), then choose_under_load scores them.
py::tuple choose_among_models(const Dispatcher& dispatcher, const std::vector<std::vector<std::size_t>>& lanes,
                              const std::vector<double>& quality, const std::vector<double>& cost,
                              const std::vector<bool>& available, std::size_t preferred, bool high,
                              double time_weight, double cost_weight, std::int64_t budget_ns, bool late_fastest,
                              std::uint64_t random) {
  const std::size_t n = lanes.size();
  if (quality.size() != n || cost.size() != n || available.size() != n) {
    throw InvalidInput("choose: lanes, quality, cost and available must have one entry per candidate");
  }
  if (preferred >= n) throw InvalidInput("choose: preferred index out of range");
  const Priority priority = high ? Priority::kHigh : Priority::kNormal;
  std::vector<CandidateLoad> candidates(n);
  double preferred_idle_ns = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const Dispatcher::ModelLoad load = dispatcher.model_load(lanes[i], priority);
    candidates[i] = {quality[i], cost[i], load.expected_ns, available[i]};
    if (i == preferred) preferred_idle_ns = load.request_ns;
  }
  const LoadChoice choice =
      choose_under_load(candidates, preferred, preferred_idle_ns, LoadWeights{time_weight, cost_weight}, budget_ns,
                        late_fastest ? LatePolicy::kFastest : LatePolicy::kRefuse, random);
  return py::make_tuple(choice.index, static_cast<int>(choice.reason));
}

void bind_dispatch(py::module_& m) {
  m.attr("NO_DEADLINE") = kNoDeadline;
  m.def("monotonic_ns", &now_ns, "The clock of every deadline (std::chrono::steady_clock), in nanoseconds.");
  py::class_<Dispatcher, std::unique_ptr<Dispatcher, ReleaseGilDelete>>(m, "Dispatcher")
      .def(py::init([](std::size_t threads, std::size_t max_batch, std::int64_t max_delay_us,
                       std::size_t queue_capacity, std::size_t max_lanes, std::int64_t spin_us, py::object sink) {
             auto owned = std::make_shared<PythonBatchSink>(std::move(sink));
             DispatchConfig config{threads, max_batch, max_delay_us, queue_capacity, max_lanes, spin_us};
             auto dispatcher =
                 std::make_unique<Dispatcher>(config, [owned](BatchStream& stream) { (*owned)(stream); });
             return std::unique_ptr<Dispatcher, ReleaseGilDelete>(dispatcher.release());
           }),
           py::arg("threads"), py::arg("max_batch"), py::arg("max_delay_us"), py::arg("queue_capacity"),
           py::arg("max_lanes"), py::arg("spin_us"), py::arg("sink"))
      .def("add_lane", &Dispatcher::add_lane)
      .def("push", &dispatch_push, py::arg("lane"), py::arg("payload"), py::arg("high"), py::arg("deadline_ns"),
           py::arg("timeout_s"))
      .def("stats",
           [](const Dispatcher& d, std::size_t lane) {
             const LaneStats s = d.stats(lane);
             return py::make_tuple(s.queued, s.in_flight, s.closed, s.queued_high, s.service.request_ns,
                                   s.service.batch_ns, s.service.error_rate, s.service.completed, s.service.failed);
           },
           py::arg("lane"),
           "(queued, in_flight, closed, queued_high, request_ns, batch_ns, error_rate, completed, failed) of a lane.")
      .def("choose", &choose_among_models, py::arg("lanes"), py::arg("quality"), py::arg("cost"),
           py::arg("available"), py::arg("preferred"), py::arg("high"), py::arg("time_weight"),
           py::arg("cost_weight"), py::arg("budget_ns"), py::arg("late_fastest"), py::arg("random"),
           "choose_under_load over candidate models, each served by its lanes: (index or -1, reason).")
      .def_property_readonly("closed", &Dispatcher::closed)
      .def("retire", &Dispatcher::retire, py::arg("lane"), py::arg("drain"), py::call_guard<py::gil_scoped_release>())
      .def(
          "close",
          [](Dispatcher& d, bool drain, double timeout_s) { return d.close(drain, seconds_to_ns(timeout_s)); },
          py::arg("drain"), py::arg("timeout_s"), py::call_guard<py::gil_scoped_release>());
}

}  // namespace

void bind_bandit(py::module_& m);  // bindings_bandit.cpp
namespace fastroute::binding {
void bind_ngrams(py::module_& m);  // bind_ngrams.cpp
}
void bind_model_state(py::module_& m);  // bindings_model_state.cpp

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
  bind_dispatch(m);
  bind_bandit(m);
  fastroute::binding::bind_ngrams(m);
  bind_model_state(m);
}
