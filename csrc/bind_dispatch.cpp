// Binding of the dispatcher (dispatcher.hpp): the Python batch callback its
// workers call (the one place a worker takes the GIL, safe while the
// interpreter finalizes), pushes that release the GIL only when a full queue
// makes them wait, load-aware choices over lanes read lock-free,
// destruction without the GIL, and each executor's RequestQueue (binding.hpp):
// a request's handle, waiting entry and push in one native step.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "binding.hpp"
#include "dispatcher.hpp"
#include "errors.hpp"
#include "model_state.hpp"
#include "stage_histogram.hpp"

namespace fastroute::binding {

namespace {

// True once the interpreter has begun to finalize (or is gone): from then on
// no thread but the finalizing one may take the GIL.
bool python_finalizing() noexcept {
#if PY_VERSION_HEX >= 0x030D0000
  return !Py_IsInitialized() || Py_IsFinalizing();
#else
  return !Py_IsInitialized() || _Py_IsFinalizing();
#endif
}

// Calls fn(*args). A worker that returns to Python while the interpreter
// finalizes is ended inside the interpreter (pthread_exit, a forced unwind
// through this frame) and its thread state is already freed: running any
// destructor that touches Python on the way out is a use-after-free. So the
// unwind stops here and the thread parks until the process exits (what
// Python 3.14 does itself). The caller keeps every Python object it owns in
// its own frame, which is then never unwound. Nothing else can come out of
// PyObject_Call: it is C.
PyObject* call_or_park_at_exit(PyObject* fn, PyObject* args) {
  try {
    return PyObject_Call(fn, args, nullptr);
  } catch (...) {  // the forced unwind; never rethrown: the handler never ends
    for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
  }
}

// The Python batch callback, shared by the dispatcher's worker threads and
// its Python owner. Its reference is dropped by the owner, with the GIL (see
// DeleteWithoutGil); if a detached worker outlives the owner and drops it
// last, it is leaked: that thread must not take the GIL (the interpreter may
// be finalizing).
struct PythonBatchSink {
  explicit PythonBatchSink(py::object fn) : callback(std::move(fn)) {}
  ~PythonBatchSink() {
    if (PyGILState_Check()) {
      callback = py::object();
    } else {
      callback.release();
    }
  }
  PythonBatchSink(const PythonBatchSink&) = delete;
  PythonBatchSink& operator=(const PythonBatchSink&) = delete;

  // The single place a worker takes the GIL: once per call, for the batch
  // and any further ones already queued on its lane (BatchStream::next).
  // Once the interpreter finalizes, the batch's references are left alone
  // (leaked): no Python code may run any more.
  void operator()(BatchStream& stream) const {
    if (python_finalizing()) return;
    if (stream.by_caller()) {  // on the thread waiting in ResultHandle.result(), which holds the GIL
      AwaitingCompletions awaiting;
      deliver(stream);
      return;
    }
    result_waiters().spin_until(true, kWorkerGilSpinNs);  // a waiter that just let go of the GIL: take it at once
    PresenceCount::Scope holding(gil_holding_workers());  // left after the GIL is released (destroyed last)
    py::gil_scoped_acquire gil;  // ends the thread, destroying nothing of Python, if finalizing began meanwhile
    holding.mark();
    do {
      AwaitingCompletions awaiting;  // this batch's asyncio results: one hand-off per event loop
      deliver(stream);
    } while (stream.next());
  }

  // Each payload's reference (taken in dispatch_push) moves into a list here.
  // The callback returns how many of the ready requests failed (for the
  // lane's error rate).
  void deliver(BatchStream& stream) const {
    const Batch& batch = stream.batch();
    py::list ready = steal_into_list(batch.ready);
    py::list expired = steal_into_list(batch.expired);
    py::list aborted = steal_into_list(batch.aborted);
    py::tuple args = py::make_tuple(batch.lane, ready, expired, aborted);
    py::object failures = py::reinterpret_steal<py::object>(call_or_park_at_exit(callback.ptr(), args.ptr()));
    if (!failures) {
      PyErr_WriteUnraisable(callback.ptr());  // the callback never raises; report it if it ever does
      return;
    }
    const std::size_t failed = PyLong_Check(failures.ptr()) ? PyLong_AsSize_t(failures.ptr()) : 0;
    if (PyErr_Occurred()) {
      PyErr_WriteUnraisable(callback.ptr());  // a negative or huge count
    } else {
      stream.report_failures(failed);
    }
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

// The dispatcher's Python owner went away: the dispatcher is destroyed
// without the GIL (its workers need it to finish), then the owner's share of
// the sink is dropped with the GIL held again.
struct DeleteWithoutGil {
  std::shared_ptr<PythonBatchSink> sink;
  void operator()(Dispatcher* dispatcher) {
    {
      py::gil_scoped_release release;
      std::default_delete<Dispatcher>()(dispatcher);
    }
    sink.reset();
  }
};

std::int64_t seconds_to_ns(double seconds) {
  if (!(seconds < kNoDeadlineFromSeconds)) return kNoDeadline;  // also inf
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

py::object object_or_throw(PyObject* object) {
  if (object == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(object);
}

}  // namespace

RequestQueue::RequestQueue(py::object dispatcher, py::dict lanes, py::object waiting, std::int64_t spin_ns,
                           bool callers_run, py::object deadline_of, py::tuple priorities, py::object refusal)
    : dispatcher_object_(std::move(dispatcher)),
      dispatcher_(py::isinstance<Dispatcher>(dispatcher_object_) ? &dispatcher_object_.cast<Dispatcher&>() : nullptr),
      callers_run_on_(callers_run ? dispatcher_ : nullptr),
      lanes_(std::move(lanes)),
      waiting_(std::move(waiting)),
      spin_ns_(spin_ns),
      deadline_of_(std::move(deadline_of)),
      priorities_(std::move(priorities)),
      refusal_(std::move(refusal)) {
  if (dispatcher_ == nullptr) throw InvalidInput("RequestQueue: dispatcher must be a fastroute._core.Dispatcher");
  if (!PyCallable_Check(deadline_of_.ptr()) || !PyCallable_Check(refusal_.ptr()))
    throw InvalidInput("RequestQueue: deadline_of and refusal must be callables");
  const py::object unclaimed = waiting_.attr("unclaimed");
  if (!PyDict_Check(unclaimed.ptr())) throw InvalidInput("RequestQueue: waiting.unclaimed must be a dict");
  unclaimed_ = py::reinterpret_borrow<py::dict>(unclaimed);
  if (priorities_.size() != 2 || !PyUnicode_Check(priorities_[0].ptr()) || !PyUnicode_Check(priorities_[1].ptr()))
    throw InvalidInput("RequestQueue: priorities must be the names (high, normal)");
  if (spin_ns_ < 0) throw InvalidInput("RequestQueue: spin_ns must not be negative");
}

std::optional<std::size_t> RequestQueue::only_lane(py::handle spec) const {
  const py::object key = object_or_throw(PyLong_FromVoidPtr(spec.ptr()));  // id(spec)
  PyObject* known = PyDict_GetItemWithError(lanes_.ptr(), key.ptr());      // (spec, lanes), borrowed
  if (known == nullptr) {
    if (PyErr_Occurred()) throw py::error_already_set();
    return std::nullopt;  // not started here yet
  }
  if (!PyTuple_Check(known) || PyTuple_GET_SIZE(known) != 2 || PyTuple_GET_ITEM(known, 0) != spec.ptr()) {
    return std::nullopt;  // not this spec's entry: the executor decides
  }
  PyObject* lanes = PyTuple_GET_ITEM(known, 1);
  if (!PyTuple_Check(lanes) || PyTuple_GET_SIZE(lanes) != 1) return std::nullopt;  // replicas: the executor picks
  const std::size_t lane = PyLong_AsSize_t(PyTuple_GET_ITEM(lanes, 0));
  if (lane == static_cast<std::size_t>(-1) && PyErr_Occurred()) throw py::error_already_set();
  return lane;
}

std::optional<bool> RequestQueue::is_high(py::handle priority) const {
  for (std::size_t index = 0; index < 2; ++index) {
    PyObject* name = priorities_[index].ptr();
    if (priority.ptr() == name) return index == 0;
    if (PyUnicode_Check(priority.ptr()) && PyUnicode_Compare(priority.ptr(), name) == 0) return index == 0;
  }
  return std::nullopt;
}

std::int64_t RequestQueue::deadline_ns(py::handle deadline) const {
  if (deadline.is_none()) return kNoDeadline;
  return deadline_of_(deadline).cast<std::int64_t>();
}

std::pair<PushStatus, py::object> RequestQueue::push(py::handle spec, py::handle x, std::size_t lane, bool high,
                                                     std::int64_t deadline_ns, double timeout_s) {
  py::object handle = new_result_handle(spin_ns_, callers_run_on_, dispatcher_object_, lane);
  const py::object deadline = object_or_throw(PyLong_FromLongLong(deadline_ns));
  // The executor's Request tuple (executors/cpu.py): (handle, x, spec, deadline_ns, waiting).
  py::object request = object_or_throw(PyTuple_Pack(5, handle.ptr(), x.ptr(), spec.ptr(), deadline.ptr(), waiting_.ptr()));
  if (deadline_ns == kNoDeadline) {
    // WaitingRequests.add without a deadline to watch: the entry alone, keyed by id(handle).
    const py::object key = object_or_throw(PyLong_FromVoidPtr(handle.ptr()));
    if (PyDict_SetItem(unclaimed_.ptr(), key.ptr(), request.ptr()) != 0) throw py::error_already_set();
  } else {
    waiting_.attr("add")(request, deadline);
  }
  const auto claim_back = [&] { return waiting_.attr("claim")(handle).cast<bool>(); };
  PushStatus status;
  try {
    status = static_cast<PushStatus>(dispatch_push(*dispatcher_, lane, request, high, deadline_ns, timeout_s));
  } catch (...) {
    claim_back();  // never queued (an unknown lane): no entry left behind
    throw;
  }
  if (status != PushStatus::kAccepted) claim_back();  // never queued: nothing else may end it
  return {status, std::move(handle)};
}

py::object RequestQueue::refusal(py::handle spec, PushStatus status, py::handle priority, py::handle timeout) const {
  return refusal_(spec, static_cast<int>(status), priority, timeout);
}

namespace {

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

// ((name, default, lowest, highest), ...) of every DispatchConfig setting, in order.
py::tuple dispatch_settings() {
  py::list settings;
#define FASTROUTE_SETTING_ROW(name, type, fallback, lowest, highest)                                       \
  settings.append(py::make_tuple(#name, static_cast<std::int64_t>(fallback), static_cast<std::int64_t>(lowest), \
                                 static_cast<std::int64_t>(highest)));
  FASTROUTE_DISPATCH_SETTINGS(FASTROUTE_SETTING_ROW)
#undef FASTROUTE_SETTING_ROW
  return py::tuple(settings);
}

}  // namespace

void bind_dispatch(py::module_& m) {
  m.attr("NO_DEADLINE") = kNoDeadline;
  m.attr("NO_DEADLINE_FROM_S") = kNoDeadlineFromSeconds;
  m.attr("PUSH_ACCEPTED") = static_cast<int>(PushStatus::kAccepted);
  m.attr("PUSH_FULL") = static_cast<int>(PushStatus::kFull);
  m.attr("PUSH_CLOSED") = static_cast<int>(PushStatus::kClosed);
  m.attr("DISPATCH_SETTINGS") = dispatch_settings();
  m.def("monotonic_ns", &now_ns, "The clock of every deadline (std::chrono::steady_clock), in nanoseconds.");
  py::class_<RequestQueue>(m, "RequestQueue",
                           "One executor's enqueue: a request's ResultHandle, its WaitingRequests entry and its "
                           "push, in one native step (see binding.hpp).")
      .def(py::init<py::object, py::dict, py::object, std::int64_t, bool, py::object, py::tuple, py::object>(),
           py::arg("dispatcher"), py::arg("lanes"), py::arg("waiting"), py::arg("spin_ns"), py::arg("callers_run"),
           py::arg("deadline_of"), py::arg("priorities"), py::arg("refusal"))
      .def(
          "push",
          [](RequestQueue& queue, std::size_t lane, py::handle spec, py::handle x, bool high, std::int64_t deadline_ns,
             double timeout_s) {
            auto [status, handle] = queue.push(spec, x, lane, high, deadline_ns, timeout_s);
            return py::make_tuple(static_cast<int>(status), std::move(handle));
          },
          py::arg("lane"), py::arg("spec"), py::arg("x"), py::arg("high"), py::arg("deadline_ns"),
          py::arg("timeout_s"),
          "(push status, handle): x queued for spec on lane (deadline_ns absolute, NO_DEADLINE: none), "
          "waiting up to timeout_s for room. A refused request's waiting entry is claimed back.");
  py::class_<Dispatcher, std::unique_ptr<Dispatcher, DeleteWithoutGil>>(m, "Dispatcher")
      .def(py::init([](std::size_t threads, std::size_t max_batch, std::int64_t max_delay_us,
                       std::size_t queue_capacity, std::size_t max_lanes, std::int64_t spin_us,
                       std::int64_t caller_runs, py::object sink) {
             auto owned = std::make_shared<PythonBatchSink>(std::move(sink));
             const DispatchConfig config{.threads = threads, .max_batch = max_batch, .max_delay_us = max_delay_us,
                                         .queue_capacity = queue_capacity, .max_lanes = max_lanes,
                                         .spin_us = spin_us, .caller_runs = caller_runs};
             auto dispatcher =
                 std::make_unique<Dispatcher>(config, [owned](BatchStream& stream) { (*owned)(stream); });
             return std::unique_ptr<Dispatcher, DeleteWithoutGil>(dispatcher.release(), DeleteWithoutGil{owned});
           }),
           py::arg("threads"), py::arg("max_batch"), py::arg("max_delay_us"), py::arg("queue_capacity"),
           py::arg("max_lanes"), py::arg("spin_us"), py::arg("caller_runs"), py::arg("sink"))
      .def("add_lane", &Dispatcher::add_lane, py::arg("fill_batches") = true,
           "A lane for one model replica; fill_batches: wait up to max_delay_us for a batch to fill.")
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
          "stages",
          [](const Dispatcher& d, std::size_t lane) {
            const LaneStagesSnapshot stages = d.stages(lane);
            py::dict out;
#define FASTROUTE_STAGE_ITEM(name, bounds) out[#name] = histogram_tuple(stages.name);
            FASTROUTE_LANE_STAGES(FASTROUTE_STAGE_ITEM)
#undef FASTROUTE_STAGE_ITEM
            return out;
          },
          py::arg("lane"),
          "{stage: (counts per bucket, sum)} of a lane: queue_wait, batch_wait, execute (ns; "
          "LATENCY_BOUNDS_NS) and batch_size (requests; BATCH_SIZE_BOUNDS).")
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
      .def("begin_close", &Dispatcher::begin_close, py::arg("drain"), py::call_guard<py::gil_scoped_release>())
      .def("on_worker_thread", &Dispatcher::on_worker_thread,
           "True on one of this dispatcher's worker threads, or on a caller's thread while it runs a batch "
           "(inside a model or a future's done-callback).")
      .def("retire", &Dispatcher::retire, py::arg("lane"), py::arg("drain"), py::call_guard<py::gil_scoped_release>())
      .def(
          "close",
          [](Dispatcher& d, bool drain, double timeout_s) { return d.close(drain, seconds_to_ns(timeout_s)); },
          py::arg("drain"), py::arg("timeout_s"), py::call_guard<py::gil_scoped_release>());
}

}  // namespace fastroute::binding
