// Binding of the analyzer (analyzer.hpp): converts each input kind to a
// view the core reads in place (arrays of any layout, str as UTF-8, bytes and
// buffer exports), releases the GIL for large inputs, and defines the
// Analysis type and analyze() on the plain CPython API: a pybind11 class
// instance and its generic dispatcher cost more than analysing a small array.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

// NumPy's own C API, for the one thing pybind11 offers only through its
// internals: a read-only array view (Analysis.features) made in ~80 ns.
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

#include "analyzer.hpp"
#include "binding.hpp"
#include "errors.hpp"
#include "features.hpp"
#include "magic.hpp"

namespace fastroute::binding {

namespace {

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
  const std::optional<std::size_t> column = feature_index(name);
  if (!column) throw py::key_error("no feature named '" + std::string(name) + "' (see fastroute.FEATURE_NAMES)");
  return analysis.features[*column];
}

py::str to_str(std::string_view text) { return {text.data(), text.size()}; }

// A read-only float32 view of the features, kept alive by `self` (its base).
py::object read_only_features(PyObject* self) {
  npy_intp length = static_cast<npy_intp>(kNumFeatures);
  void* data = const_cast<float*>(analysis_of(self).features.data());  // not writeable: no WRITEABLE flag
  auto view = py::reinterpret_steal<py::object>(PyArray_New(&PyArray_Type, 1, &length, NPY_FLOAT32, nullptr, data, 0,
                                                            NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED, nullptr));
  if (!view) throw py::error_already_set();
  if (PyArray_SetBaseObject(reinterpret_cast<PyArrayObject*>(view.ptr()), py::handle(self).inc_ref().ptr()) < 0) {
    throw py::error_already_set();  // SetBaseObject dropped the reference it was given
  }
  return view;
}

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
       return guarded([&] { return read_only_features(self); });
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

}  // namespace

py::object analysis_object(const Analysis& analysis) { return wrap(analysis); }

const Analysis* analysis_in(py::handle object) noexcept {
  return Py_IS_TYPE(object.ptr(), analysis_type) ? &analysis_of(object.ptr()) : nullptr;
}

Analysis analyze_object(py::handle x, py::handle hint_arg) {
  Hint hint = Hint::kAuto;
  if (!hint_arg.is_none()) {
    if (!PyUnicode_Check(hint_arg.ptr())) throw InvalidInput("hint must be a str or None, not " + std::string(py::repr(hint_arg)));
    hint = parse_hint(str_utf8(hint_arg));
  }
  if (py::isinstance<py::array>(x)) {  // the hot path: no variant, no copies
    const ArrayView view = array_view(py::reinterpret_borrow<py::array>(x));
    if (input_work(view) < kReleaseGilFrom) return analyze_array(view, hint);
    return without_gil([&] { return analyze_array(view, hint); });
  }
  std::vector<std::unique_ptr<HeldBuffer>> held;
  const Input input = to_input(x, held);
  if (input_work(input) < kReleaseGilFrom) return analyze(input, hint);
  return without_gil([&] { return analyze(input, hint); });
}

namespace {

py::object analyze_py(py::handle x, py::handle hint) { return wrap(analyze_object(x, hint)); }

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
  // A private copy of the list: it holds every item until the call returns,
  // even if another thread empties the caller's list while the GIL is released
  // (py::list(xs) would only borrow a list, not copy it).
  const auto items = py::reinterpret_steal<py::list>(PySequence_List(xs.ptr()));
  if (!items) throw py::error_already_set();
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

}  // namespace

void bind_analyzer(py::module_& m) {
  if (_import_array() < 0) throw py::error_already_set();  // NumPy's C API table, once per process
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

}  // namespace fastroute::binding
