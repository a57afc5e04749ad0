// The only file that knows Python: it converts arguments, checks buffers at
// the boundary, releases the GIL around native work and converts back.
#include <pybind11/pybind11.h>
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <bit>
#include <memory>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "analyzer.hpp"
#include "dispatcher.hpp"
#include "errors.hpp"
#include "features.hpp"
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
    }
  });
}

template <std::size_t N>
py::tuple names_tuple(const std::array<std::string_view, N>& names) {
  py::tuple out(N);
  for (std::size_t i = 0; i < N; ++i) out[i] = py::str(names[i].data(), names[i].size());
  return out;
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
        callback(batch.lane, ready, expired, aborted);
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
// acceptance the dispatcher holds a reference to payload until the sink.
int dispatch_push(Dispatcher& dispatcher, std::size_t lane, py::object payload, bool high, double deadline_s,
                  double timeout_s) {
  const Priority priority = high ? Priority::kHigh : Priority::kNormal;
  const std::int64_t deadline = deadline_s == INFINITY ? kNoDeadline : now_ns() + seconds_to_ns(deadline_s);
  const auto handle = reinterpret_cast<Payload>(payload.release().ptr());
  PushStatus status = dispatcher.try_push(lane, handle, priority, deadline);
  if (status == PushStatus::kFull && timeout_s > 0) {  // only a full queue costs a GIL release
    py::gil_scoped_release release;
    status = dispatcher.push_wait(lane, handle, priority, deadline, seconds_to_ns(timeout_s));
  }
  if (status != PushStatus::kAccepted) py::reinterpret_steal<py::object>(reinterpret_cast<PyObject*>(handle));
  return static_cast<int>(status);
}

void bind_dispatch(py::module_& m) {
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
      .def("push", &dispatch_push, py::arg("lane"), py::arg("payload"), py::arg("high"), py::arg("deadline_s"),
           py::arg("timeout_s"))
      .def("stats",
           [](const Dispatcher& d, std::size_t lane) {
             const LaneStats s = d.stats(lane);
             return py::make_tuple(s.queued, s.in_flight, s.closed);
           })
      .def_property_readonly("closed", &Dispatcher::closed)
      .def("retire", &Dispatcher::retire, py::arg("lane"), py::arg("drain"), py::call_guard<py::gil_scoped_release>())
      .def(
          "close",
          [](Dispatcher& d, bool drain, double timeout_s) { return d.close(drain, seconds_to_ns(timeout_s)); },
          py::arg("drain"), py::arg("timeout_s"), py::call_guard<py::gil_scoped_release>());
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

  bind_analyzer(m);
  bind_dispatch(m);
}
