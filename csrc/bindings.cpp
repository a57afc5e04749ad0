// The only file that knows Python: it converts arguments, checks buffers at
// the boundary, releases the GIL around native work and converts back.
#include <pybind11/pybind11.h>
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include "analyzer.hpp"
#include "dispatcher.hpp"
#include "errors.hpp"
#include "features.hpp"

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

  bind_dispatch(m);
}
