// Binding of the dispatcher (dispatcher.hpp): the Python batch callback its
// workers call (the one place a worker takes the GIL), pushes that release the
// GIL only when a full queue makes them wait, load-aware choices over lanes
// read lock-free, and destruction without the GIL.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "binding.hpp"
#include "dispatcher.hpp"
#include "errors.hpp"
#include "model_state.hpp"

namespace fastroute::binding {

namespace {

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

}  // namespace

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
      .def(
          "expected_ns",
          [](const Dispatcher& d, std::size_t lane, bool high) {
            return d.expected_ns(lane, high ? Priority::kHigh : Priority::kNormal);
          },
          py::arg("lane"), py::arg("high"), "Dispatcher::expected_ns: when a request pushed now would be done.")
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

}  // namespace fastroute::binding
