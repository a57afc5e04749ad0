// What the binding files share. Each core component has one binding file
// (csrc/bind_<component>.cpp) that only converts arguments, checks buffers at
// the boundary, releases the GIL around native work and converts back;
// module.cpp assembles the `fastroute._core` module.
// No pybind11 internals (py::detail) are used, but for the check pybind11's
// documentation prescribes for garbage-collected types (bind_result.cpp).
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <optional>
#include <string_view>
#include <utility>

#include "result.hpp"

namespace fastroute {
class Dispatcher;  // dispatcher.hpp
enum class PushStatus : std::uint8_t;  // dispatcher.hpp
struct Analysis;  // analyzer.hpp
struct HistogramSnapshot;  // stage_histogram.hpp
class HoldCount;  // model_state.hpp
}  // namespace fastroute

namespace fastroute::binding {

namespace py = pybind11;

// Analyses one Python input (analyze() without the Python result object): the
// GIL is released for large inputs. Throws the analyzer's errors
// (InvalidInput, UnsupportedInput, CorruptFile). Call with the GIL held.
Analysis analyze_object(py::handle x, py::handle hint);
// The Python Analysis object (what analyze() returns) holding a copy of `analysis`.
// Allocates; throws py::error_already_set when Python is out of memory.
py::object analysis_object(const Analysis& analysis);
// The Analysis inside a Python Analysis object, or null for any other object.
// Never throws; the pointer lives as long as the object.
const Analysis* analysis_in(py::handle object) noexcept;

// The HoldCount inside a Python HoldCount object (bind_model_state.cpp), or null
// for any other object. Never throws; the pointer lives as long as the object.
HoldCount* hold_count_in(py::handle object) noexcept;
// Ends one hold of a Python HoldCount; the last of a retiring version calls its
// on_drained. With the GIL held. Throws TypeError for another object,
// InvalidInput when nothing is held, what on_drained raises.
void drop_hold(py::handle holds);

// A new pending ResultHandle (bind_result.cpp), as ResultHandle(spin_ns, dispatcher, lane):
// `dispatcher` (null: only workers serve it; `owner`, its Python object, keeps it alive) and
// `lane` are where the request is queued, for result() to run it on the waiting thread.
// GIL held; allocates; throws py::error_already_set (out of memory).
py::object new_result_handle(std::int64_t spin_ns, Dispatcher* dispatcher, const py::object& owner, std::size_t lane);
// handle.decision = decision (unless None), then handle.add_done_callback(on_done), natively
// (on_done runs at once if the handle is already settled). GIL held; allocates.
void link_result_handle(py::handle handle, const py::object& decision, py::object on_done);
// handle.asyncio_future(): its asyncio future on the running loop. GIL held; raises
// RuntimeError outside a running loop.
py::object result_handle_asyncio_future(py::handle handle);

// One executor's enqueue (bind_dispatch.cpp; Python: fastroute._core.RequestQueue, made
// once by each CPUExecutor): a request's ResultHandle, its entry in the executor's
// WaitingRequests (executors/waiting.py: the exactly-once claim, the deadline watch) and
// its push onto a dispatcher lane, in one native step. CPUExecutor._push and the router's
// one-call submit (FastRoute.submit/ainfer, bind_fast_path.cpp) both queue through it.
// Every method: GIL held, not thread-safe beyond that; references nothing that references
// its executor back.
class RequestQueue {
 public:
  // `lanes`: the executor's table id(spec) -> (spec, lanes); `waiting`: its WaitingRequests;
  // `callers_run`: handles may run their request in result() ("caller runs");
  // `deadline_of(seconds)`: submit's absolute deadline in ns (raises InvalidInput);
  // `priorities`: ("high", "normal"); `refusal(spec, status, priority, timeout)`: the
  // exception a refused push raises.
  RequestQueue(py::object dispatcher, py::dict lanes, py::object waiting, std::int64_t spin_ns, bool callers_run,
               py::object deadline_of, py::tuple priorities, py::object refusal);

  // The lane of `spec` when it has exactly one and it exists (one replica, started); none
  // otherwise (first request, or several replicas: the executor picks). Never throws but
  // for out of memory.
  std::optional<std::size_t> only_lane(py::handle spec) const;
  // True for the high priority name, false for the normal one, none for anything else.
  std::optional<bool> is_high(py::handle priority) const;
  // kNoDeadline for None, else deadline_of(deadline). Throws what deadline_of raises.
  std::int64_t deadline_ns(py::handle deadline) const;
  // Queues x for spec on lane: (status, handle). Accepted: the handle is linked to its lane
  // and waiting entry, and settles exactly once. Refused: the waiting entry is claimed back
  // (nothing else may end the handle unless close raced the push and already did).
  // A full queue waits up to timeout_s for room with the GIL released.
  std::pair<PushStatus, py::object> push(py::handle spec, py::handle x, std::size_t lane, bool high,
                                         std::int64_t deadline_ns, double timeout_s);
  // The exception a refused push (status) raises, from `refusal`.
  py::object refusal(py::handle spec, PushStatus status, py::handle priority, py::handle timeout) const;

 private:
  py::object dispatcher_object_;  // keeps *dispatcher_ alive
  Dispatcher* dispatcher_;
  Dispatcher* callers_run_on_;  // dispatcher_ when callers may run their requests, else null
  py::dict lanes_;
  py::object waiting_;
  py::dict unclaimed_;  // waiting_.unclaimed: id(handle) -> request
  std::int64_t spin_ns_;
  py::object deadline_of_;
  py::tuple priorities_;
  py::object refusal_;
};

// Sets the Python error for a C++ exception: core errors (errors.hpp) become
// their fastroute.errors class, pybind11's and the standard library's the
// builtin pybind11 would pick, anything else RuntimeError. Thread-safe with
// the GIL held; never throws.
void set_python_error(std::exception_ptr error) noexcept;

// Runs `body` (returning a py::object) for a CPython slot or METH_FASTCALL
// function: a C++ exception becomes the Python error set_python_error names.
template <class Body>
PyObject* guarded(Body&& body) noexcept {
  try {
    return body().release().ptr();
  } catch (...) {
    set_python_error(std::current_exception());
  }
  return nullptr;
}

// Registers set_python_error for every pybind11-bound function. Call once at import.
void register_error_translation();

// An input array converted (when needed) to a C-contiguous array of T.
template <typename T>
using InArray = py::array_t<T, py::array::c_style | py::array::forcecast>;

// A tuple of str from a table of names (features.hpp, analyzer.hpp).
template <std::size_t N>
py::tuple names_tuple(const std::array<std::string_view, N>& names) {
  py::tuple out(N);
  for (std::size_t i = 0; i < N; ++i) out[i] = py::str(names[i].data(), names[i].size());
  return out;
}

// (counts per bucket, sum) of a histogram snapshot (bind_stage_histogram.cpp).
py::tuple histogram_tuple(const HistogramSnapshot& snapshot);

// While alive on a worker thread (GIL held), result handles settled on this
// thread hand their awaiting asyncio futures over when it ends: one
// loop.call_soon_threadsafe per event loop for all of them, not one per
// request. Scopes nest (the outermost flushes). Never throws from its end.
class AwaitingCompletions {
 public:
  AwaitingCompletions();
  ~AwaitingCompletions();
  AwaitingCompletions(const AwaitingCompletions&) = delete;
  AwaitingCompletions& operator=(const AwaitingCompletions&) = delete;

 private:
  bool owner_;  // false: an enclosing scope on this thread collects and flushes
  GroupsByKey<PyObject*, py::object> handles_;  // by awaiting loop, while owner_
};

// The GIL hand-off of a submit-then-wait round trip (PresenceCount, result.hpp):
// ResultHandle.result() counts itself in result_waiters() while it waits
// without the GIL; a worker about to take the GIL for a batch first spins up
// to kWorkerGilSpinNs for such a waiter (so it takes a GIL just released
// instead of sleeping on it) and counts itself in gil_holding_workers() until
// it has released the GIL again, which a waiter whose result came spins on
// before taking the GIL back. Thread-safe; never allocates. Measured (no-op
// submit->result, 2 loaded vCPUs, spin_us=20): median 25 us per round trip
// with the hand-off, 89 us without; ThreadPoolExecutor(2) 26.5 us.
PresenceCount& result_waiters() noexcept;
PresenceCount& gil_holding_workers() noexcept;
inline constexpr std::int64_t kWorkerGilSpinNs = 5'000;

void bind_analyzer(py::module_& m);
void bind_bandit(py::module_& m);
void bind_scorer(py::module_& m);
void bind_dispatch(py::module_& m);
void bind_ngrams(py::module_& m);
void bind_linear(py::module_& m);
void bind_model_state(py::module_& m);
void bind_stage_histogram(py::module_& m);
void bind_result(py::module_& m);
void bind_fast_path(py::module_& m);

}  // namespace fastroute::binding
