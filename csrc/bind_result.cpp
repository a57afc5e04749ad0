// Binding of the result handle (result.hpp): fastroute._core.ResultHandle,
// what every submitted request returns. The methods of a
// concurrent.futures.Future, implemented over one ResultSlot: waits release
// the GIL and spin before parking; the outcome, callbacks and asyncio waiter
// are Python objects touched only with the GIL held. An awaiting coroutine's
// asyncio future is set on its own loop, in one call_soon_threadsafe per loop
// for every handle a worker settles in one batch (AwaitingCompletions); a
// cancel of that future is read lazily (follow_awaiter_cancel), not watched.
// A handle made with its dispatcher and lane lets result() run the request
// on the waiting thread when no worker has started on it ("caller runs",
// Dispatcher::run_as_caller): no thread hand-off, no GIL hand-off.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "binding.hpp"
#include "dispatcher.hpp"
#include "parker.hpp"
#include "result.hpp"

namespace fastroute::binding {

namespace {

// The Python names the handle uses, looked up once (GIL held).
struct PythonNames {
  py::object cancelled_error;      // concurrent.futures.CancelledError
  py::object invalid_state_error;  // concurrent.futures.InvalidStateError
  py::object future;               // concurrent.futures.Future
  py::object get_running_loop;     // asyncio.get_running_loop
  py::object wrap_future;          // asyncio.wrap_future
  py::object condition;            // threading.Condition
  py::object logger;               // logging.getLogger("fastroute")
  // Method names of an asyncio future and loop, interned, for call_method.
  py::str create_future, cancelled, done, set_result, set_exception;
};

py::str interned(const char* name) {
  PyObject* text = PyUnicode_InternFromString(name);
  if (text == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::str>(text);
}

const PythonNames& names() {
  PYBIND11_CONSTINIT static py::gil_safe_call_once_and_store<PythonNames> stored;
  return stored
      .call_once_and_store_result([] {
        const py::module_ futures = py::module_::import("concurrent.futures");
        return PythonNames{futures.attr("CancelledError"), futures.attr("InvalidStateError"), futures.attr("Future"),
                           py::module_::import("asyncio").attr("get_running_loop"),
                           py::module_::import("asyncio").attr("wrap_future"),
                           py::module_::import("threading").attr("Condition"),
                           py::module_::import("logging").attr("getLogger")("fastroute"),
                           interned("create_future"), interned("cancelled"), interned("done"),
                           interned("set_result"), interned("set_exception")};
      })
      .get_stored();
}

// object.name() or object.name(arg) without making a bound method (the
// per-request calls on asyncio futures: CPython's method-call fast path).
py::object call_method(py::handle object, const py::str& name, py::handle arg = {}) {
  PyObject* args[] = {object.ptr(), arg.ptr()};
  const std::size_t count = arg ? 2 : 1;
  PyObject* returned = PyObject_VectorcallMethod(name.ptr(), args, count | PY_VECTORCALL_ARGUMENTS_OFFSET, nullptr);
  if (returned == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(returned);
}

bool is_true(const py::object& value) {
  const int truth = PyObject_IsTrue(value.ptr());
  if (truth < 0) throw py::error_already_set();
  return truth != 0;
}

std::int64_t deadline_after(const py::object& timeout) {
  if (timeout.is_none()) return kNoDeadline;
  const double seconds = timeout.cast<double>();
  if (!(seconds < kNoDeadlineFromSeconds)) return kNoDeadline;  // also inf
  const std::int64_t now = now_ns();
  return seconds <= 0 ? now : now + static_cast<std::int64_t>(seconds * 1e9);
}

[[noreturn]] void raise_object(const py::object& error) {
  PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(error.ptr())), error.ptr());
  throw py::error_already_set();
}

class ResultHandle;
void settle_awaiting(const py::list& handles);

// The handles settled on this thread while an AwaitingCompletions is alive, by loop.
thread_local GroupsByKey<PyObject*, py::object>* awaiting_batch = nullptr;

class ResultHandle {
  struct Callback {
    py::object fn;
    py::tuple args;  // passed before the handle
  };

 public:
  // `dispatcher` (a fastroute._core.Dispatcher, or None) and `lane`: where the
  // request is queued, for result() to serve it there (see run_here).
  ResultHandle(std::int64_t spin_ns, py::object dispatcher, std::size_t lane) : spin_ns_(spin_ns), lane_(lane) {
    if (!dispatcher.is_none()) {
      dispatcher_ = &dispatcher.cast<Dispatcher&>();
      dispatcher_owner_ = std::move(dispatcher);
    }
  }
  // The same with the dispatcher already unwrapped (null: none), as a native enqueue has it.
  ResultHandle(std::int64_t spin_ns, Dispatcher* dispatcher, py::object owner, std::size_t lane)
      : spin_ns_(spin_ns), lane_(lane) {
    if (dispatcher != nullptr) {
      dispatcher_ = dispatcher;
      dispatcher_owner_ = std::move(owner);
    }
  }

  bool done() const noexcept { return slot_.done(); }
  bool cancelled() const noexcept { return slot_.state() == ResultState::kCancelled; }
  bool running() const noexcept {
    const ResultState state = slot_.state();
    return state == ResultState::kRunning || state == ResultState::kSettling;
  }

  py::object result(const py::object& timeout) {
    wait(timeout);
    if (slot_.state() == ResultState::kFailed) raise_object(value_);
    return value_;
  }

  py::object exception(const py::object& timeout) {
    wait(timeout);
    return slot_.state() == ResultState::kFailed ? value_ : py::none();
  }

  bool cancel(py::handle self) {
    if (cancelled()) return true;
    if (!slot_.cancel()) return false;
    on_settled(self);
    return true;
  }

  bool set_running_or_notify_cancel(py::handle self) {
    follow_awaiter_cancel(self);
    switch (slot_.start()) {
      case StartOutcome::kStarted:
        return true;
      case StartOutcome::kCancelled:
        return false;
      case StartOutcome::kNotPending:
        break;
    }
    PyErr_SetString(PyExc_RuntimeError, ("ResultHandle in unexpected state: " + repr(self)).c_str());
    throw py::error_already_set();
  }

  void set_result(py::handle self, py::object value) { settle(self, true, std::move(value)); }
  void set_exception(py::handle self, py::object error) { settle(self, false, std::move(error)); }

  // fn(*args, self) once settled (at once if already): a callable made once
  // plus this request's arguments, so a caller needs no closure per request.
  void add_done_callback(py::handle self, py::object fn, py::tuple args) {
    Callback callback{std::move(fn), std::move(args)};
    if (done()) {
      call_back(self, callback);
    } else {
      callbacks_.push_back(std::move(callback));
    }
  }

  // An asyncio future on the running loop, set when this handle is (on that
  // loop). The future is made before this handle's state is read: making it
  // runs Python code (the loop's create_future, Future.__init__ calling
  // loop.get_debug()), where the interpreter may hand the GIL to a worker that
  // settles this handle; read before it, the state could be stale and the
  // future be registered on a handle already settled, never to be set (the
  // hang of commit 4eec18a). From the read to the registration no Python runs.
  // No done-callback watches the future for a cancel (that cost a bound method
  // and a copied Context per request): follow_awaiter_cancel reads it.
  py::object asyncio_future(py::handle self) {
    py::object loop = names().get_running_loop();
    py::object future = call_method(loop, names().create_future);
    follow_awaiter_cancel(self);
    if (done()) {
      copy_outcome_to(future);
    } else if (!awaiting_.is_none()) {  // a second awaiter: through the bridge (rare)
      return names().wrap_future(as_future(self));
    } else {
      loop_ = std::move(loop);
      awaiting_ = std::move(future);
      return awaiting_;
    }
    return future;
  }

  // A cancelled awaiting future (its task cancelled, asyncio.wait_for timed
  // out) cancels the request if it has not started. Read lazily, wherever the
  // handle's state matters: when a worker starts the request, and whenever
  // its state is read or waited for from Python. GIL held, any thread (a
  // worker reads a future of the awaiting loop: one field, under the GIL).
  void follow_awaiter_cancel(py::handle self) {
    if (awaiting_.is_none() || slot_.state() != ResultState::kPending) return;
    const py::object future = awaiting_;  // held through the call, which may run Python
    if (!is_true(call_method(future, names().cancelled))) return;
    awaiting_ = py::none();  // cancelled: nothing to deliver to it
    loop_ = py::none();
    cancel(self);
  }

  void cancel_if_cancelled(py::handle self, const py::object& future) {
    if (future.attr("cancelled")().cast<bool>()) cancel(self);
  }

  // On the awaiting loop: the handle's outcome to its asyncio future.
  void deliver_to_awaiting() {
    py::object future = std::exchange(awaiting_, py::none());
    loop_ = py::none();
    if (future.is_none() || is_true(call_method(future, names().done))) return;
    copy_outcome_to(future);
  }

  // A concurrent.futures.Future mirroring this handle (made on first call):
  // for concurrent.futures.wait/as_completed and asyncio.wrap_future.
  // Cancelling it cancels the request.
  py::object as_future(py::handle self) {
    if (!bridge_.is_none()) return bridge_;
    bridge_ = names().future();
    if (running()) bridge_.attr("set_running_or_notify_cancel")();  // too late to cancel it
    bridge_.attr("add_done_callback")(self.attr("_cancel_if_cancelled"));
    if (done()) copy_outcome_to_bridge();
    return bridge_;
  }

  std::string repr(py::handle self) const {
    static constexpr const char* kStates[] = {"pending", "running", "running", "finished", "finished", "cancelled"};
    char address[32];
    std::snprintf(address, sizeof address, "%p", static_cast<void*>(self.ptr()));
    std::string text = std::string("<ResultHandle at ") + address + " state=" + kStates[static_cast<int>(slot_.state())];
    const char* outcome = slot_.state() == ResultState::kSucceeded ? " returned "
                          : slot_.state() == ResultState::kFailed  ? " raised "
                                                                   : nullptr;
    if (outcome != nullptr) text += outcome + py::type::of(value_).attr("__name__").cast<std::string>();
    return text + ">";
  }

  int traverse(visitproc visit, void* arg) const {
    for (const py::object* held : {&value_, &decision, &loop_, &awaiting_, &bridge_, &condition_, &waiters_,
                                   &dispatcher_owner_}) {
      Py_VISIT(held->ptr());
    }
    for (const Callback& callback : callbacks_) {
      Py_VISIT(callback.fn.ptr());
      Py_VISIT(callback.args.ptr());
    }
    return 0;
  }

  void clear() {
    callbacks_.clear();
    dispatcher_ = nullptr;
    for (py::object* held : {&value_, &decision, &loop_, &awaiting_, &bridge_, &condition_, &waiters_,
                             &dispatcher_owner_}) {
      *held = py::none();
    }
  }

  py::object decision = py::none();  // the router's Decision, a plain attribute; guarded by the GIL

 private:
  // Serves the request's lane on this thread (GIL held) while the request is
  // still queued and no one else serves the lane: batch after batch until
  // this request has run. Not with a timeout: a model call could outlast it.
  // Settling this handle drops dispatcher_owner_, so a reference is held here.
  void run_here(const py::object& timeout) {
    if (dispatcher_ == nullptr || !timeout.is_none()) return;
    const py::object keep_alive = dispatcher_owner_;
    Dispatcher& dispatcher = *dispatcher_;
    while (!done() && dispatcher.run_as_caller(lane_)) {
    }
  }

  void wait(const py::object& timeout) {
    run_here(timeout);
    if (!done()) {
      const std::int64_t deadline = deadline_after(timeout);
      bool finished;
      {
        py::gil_scoped_release release;
        PresenceCount::Scope waiting(result_waiters());
        waiting.mark();
        finished = slot_.wait_until(deadline, spin_ns_);
        if (finished) gil_holding_workers().spin_until(false, spin_ns_);  // then the GIL is free to take
      }
      if (!finished) {
        PyErr_SetNone(PyExc_TimeoutError);
        throw py::error_already_set();
      }
    }
    if (cancelled()) {
      PyErr_SetObject(names().cancelled_error.ptr(), nullptr);
      throw py::error_already_set();
    }
  }

  void settle(py::handle self, bool ok, py::object outcome) {
    if (!slot_.settle(ok, [&] { value_ = std::move(outcome); })) {
      PyErr_SetString(names().invalid_state_error.ptr(),
                      ("ResultHandle already settled: " + repr(self)).c_str());
      throw py::error_already_set();
    }
    on_settled(self);
  }

  // After the slot reached its final state: callbacks, the bridge, the awaiting loop.
  void on_settled(py::handle self) {
    dispatcher_ = nullptr;  // nothing left to run here
    dispatcher_owner_ = py::none();
    for (const Callback& callback : std::exchange(callbacks_, {})) call_back(self, callback);
    if (!bridge_.is_none()) copy_outcome_to_bridge();
    if (!condition_.is_none()) notify_futures_waiters(self);
    if (awaiting_.is_none()) return;
    if (awaiting_batch != nullptr) {
      awaiting_batch->add(loop_.ptr(), py::reinterpret_borrow<py::object>(self));
      return;
    }
    py::list one;
    one.append(self);
    call_soon_threadsafe(loop_, one);
  }

  void call_back(py::handle self, const Callback& callback) {
    try {
      if (callback.args.empty()) {
        callback.fn(self);
      } else {
        const auto n = static_cast<Py_ssize_t>(callback.args.size());
        py::tuple args(n + 1);
        for (Py_ssize_t i = 0; i < n; ++i) {
          py::object arg = callback.args[static_cast<std::size_t>(i)];
          PyTuple_SET_ITEM(args.ptr(), i, arg.release().ptr());
        }
        PyTuple_SET_ITEM(args.ptr(), n, self.inc_ref().ptr());
        PyObject* returned = PyObject_Call(callback.fn.ptr(), args.ptr(), nullptr);
        if (returned == nullptr) throw py::error_already_set();
        Py_DECREF(returned);
      }
    } catch (py::error_already_set& error) {
      names().logger.attr("error")("exception calling callback for %r", self, py::arg("exc_info") = error.value());
    }
  }


 public:
  // concurrent.futures.wait/as_completed read a Future's _condition, _state
  // and _waiters (CPython's protocol since 3.2); a handle makes the first two
  // only when asked, so this costs nothing unless they are used.
  py::object futures_condition() {
    if (condition_.is_none()) {
      condition_ = names().condition();
      waiters_ = py::list();
    }
    return condition_;
  }
  py::object futures_waiters() {
    futures_condition();
    return waiters_;
  }
  const char* futures_state() const noexcept {
    switch (slot_.state()) {
      case ResultState::kPending:
        return "PENDING";
      case ResultState::kRunning:
      case ResultState::kSettling:
        return "RUNNING";
      case ResultState::kCancelled:
        return "CANCELLED_AND_NOTIFIED";  // notified at once: no executor is told later
      default:
        return "FINISHED";
    }
  }

 private:
  // As Future does under its condition: each installed waiter learns the outcome.
  void notify_futures_waiters(py::handle self) {
    condition_.attr("acquire")();
    try {
      const char* method = cancelled() ? "add_cancelled" : slot_.state() == ResultState::kFailed ? "add_exception"
                                                                                              : "add_result";
      for (py::handle waiter : py::list(waiters_)) waiter.attr(method)(self);
      condition_.attr("notify_all")();
    } catch (...) {
      condition_.attr("release")();
      throw;
    }
    condition_.attr("release")();
  }

  // A cancelled Future counts as done for wait()/as_completed once notified.
  void notify_bridge_cancelled() {
    try {
      bridge_.attr("set_running_or_notify_cancel")();
    } catch (py::error_already_set& error) {
      if (!error.matches(PyExc_RuntimeError)) throw;  // notified already
    }
  }

  void copy_outcome_to(const py::object& future) const {
    switch (slot_.state()) {
      case ResultState::kSucceeded:
        call_method(future, names().set_result, value_);
        break;
      case ResultState::kFailed:
        call_method(future, names().set_exception, value_);
        break;
      default:
        future.attr("cancel")();
    }
  }

  void copy_outcome_to_bridge() {
    if (bridge_.attr("done")().cast<bool>()) {
      if (cancelled() && bridge_.attr("cancelled")().cast<bool>()) notify_bridge_cancelled();
      return;
    }
    if (cancelled()) {
      bridge_.attr("cancel")();
      notify_bridge_cancelled();
      return;
    }
    bridge_.attr("set_running_or_notify_cancel")();
    copy_outcome_to(bridge_);
  }

 public:
  static void call_soon_threadsafe(const py::object& loop, const py::list& handles) {
    static const py::handle settle = py::cpp_function(&settle_awaiting).release();  // lives as long as the module
    try {
      loop.attr("call_soon_threadsafe")(settle, handles);
    } catch (py::error_already_set& error) {
      if (!error.matches(PyExc_RuntimeError)) throw;  // a closed loop: nobody awaits there any more
    }
  }

 private:
  ResultSlot slot_;
  const std::int64_t spin_ns_;
  py::object value_ = py::none();      // the result or the exception; written while settling, read once done
  std::vector<Callback> callbacks_;  // guarded by the GIL
  py::object loop_ = py::none();       // the loop awaiting this handle; guarded by the GIL
  py::object awaiting_ = py::none();   // its asyncio future; guarded by the GIL
  py::object bridge_ = py::none();     // as_future()'s Future; guarded by the GIL
  py::object condition_ = py::none();  // made for concurrent.futures.wait; guarded by the GIL
  py::object waiters_ = py::none();    // its waiters (installed under condition_)
  Dispatcher* dispatcher_ = nullptr;   // where the request is queued, until settled; guarded by the GIL
  py::object dispatcher_owner_ = py::none();  // the Python object owning *dispatcher_; guarded by the GIL
  const std::size_t lane_;             // the request's lane in *dispatcher_
};

// The handle inside `self`, or null while its __init__ has not run (the
// collector may visit an instance between its allocation and its __init__).
// is_holder_constructed is what pybind11's documentation of
// custom_type_setup prescribes for exactly this: the one py::detail name used.
ResultHandle* constructed(PyObject* self) noexcept {
  if (!py::detail::is_holder_constructed(self)) return nullptr;
  return &py::cast<ResultHandle&>(py::handle(self));
}

// The handle inside `self`, its state first brought up to date with its
// awaiting asyncio future (a cancelled one cancels the request): what every
// read or wait from Python goes through.
ResultHandle& observed(py::handle self) {
  ResultHandle& handle = self.cast<ResultHandle&>();
  handle.follow_awaiter_cancel(self);
  return handle;
}

void settle_awaiting(const py::list& handles) {
  for (py::handle handle : handles) handle.cast<ResultHandle&>().deliver_to_awaiting();
}

}  // namespace

PresenceCount& result_waiters() noexcept {
  static PresenceCount waiters;
  return waiters;
}

PresenceCount& gil_holding_workers() noexcept {
  static PresenceCount workers;
  return workers;
}

AwaitingCompletions::AwaitingCompletions() : owner_(awaiting_batch == nullptr) {
  if (owner_) awaiting_batch = &handles_;
}

AwaitingCompletions::~AwaitingCompletions() {
  if (!owner_) return;
  awaiting_batch = nullptr;
  for (auto& group : handles_.take()) {
    py::list handles(group.items.size());
    for (std::size_t i = 0; i < group.items.size(); ++i) {
      PyList_SET_ITEM(handles.ptr(), static_cast<Py_ssize_t>(i), group.items[i].release().ptr());
    }
    try {
      ResultHandle::call_soon_threadsafe(py::reinterpret_borrow<py::object>(group.key), handles);
    } catch (py::error_already_set& error) {
      error.discard_as_unraisable("fastroute: handing results to an event loop");
    }
  }
}

py::object new_result_handle(std::int64_t spin_ns, Dispatcher* dispatcher, const py::object& owner, std::size_t lane) {
  return py::cast(std::make_unique<ResultHandle>(spin_ns, dispatcher, owner, lane));
}

void link_result_handle(py::handle handle, const py::object& decision, py::object on_done) {
  ResultHandle& linked = handle.cast<ResultHandle&>();
  if (!decision.is_none()) linked.decision = decision;
  linked.add_done_callback(handle, std::move(on_done), py::tuple());
}

py::object result_handle_asyncio_future(py::handle handle) { return handle.cast<ResultHandle&>().asyncio_future(handle); }

void bind_result(py::module_& m) {
  m.attr("DEFAULT_RESULT_SPIN_NS") = kDefaultResultSpinNs;
  const auto setup = py::custom_type_setup([](PyHeapTypeObject* heap_type) {
    PyTypeObject* type = &heap_type->ht_type;
    type->tp_flags |= Py_TPFLAGS_HAVE_GC;
    type->tp_traverse = [](PyObject* self, visitproc visit, void* arg) {
      Py_VISIT(Py_TYPE(self));
      const ResultHandle* handle = constructed(self);
      return handle != nullptr ? handle->traverse(visit, arg) : 0;
    };
    type->tp_clear = [](PyObject* self) {
      if (ResultHandle* handle = constructed(self)) handle->clear();
      return 0;
    };
  });
  py::class_<ResultHandle>(m, "ResultHandle", setup,
                           "One request's outcome: the methods of a concurrent.futures.Future, awaitable.")
      .def(py::init<std::int64_t, py::object, std::size_t>(), py::arg("spin_ns") = kDefaultResultSpinNs,
           py::arg("dispatcher") = py::none(), py::arg("lane") = 0,
           "spin_ns: how long result() spins before parking; dispatcher and lane: where the request "
           "is queued, for result() to run it on the waiting thread when no worker has it yet.")
      .def("done", [](py::handle self) { return observed(self).done(); })
      .def("cancelled", [](py::handle self) { return observed(self).cancelled(); })
      .def("running", &ResultHandle::running)
      .def("result", [](py::handle self, const py::object& timeout) { return observed(self).result(timeout); },
           py::arg("timeout") = py::none())
      .def("exception", [](py::handle self, const py::object& timeout) { return observed(self).exception(timeout); },
           py::arg("timeout") = py::none())
      .def("cancel", [](py::handle self) { return self.cast<ResultHandle&>().cancel(self); })
      .def("add_done_callback",
           [](py::handle self, py::object fn, py::args args) {
             self.cast<ResultHandle&>().add_done_callback(self, std::move(fn), std::move(args));
           },
           py::arg("fn"))
      .def("set_running_or_notify_cancel",
           [](py::handle self) { return self.cast<ResultHandle&>().set_running_or_notify_cancel(self); })
      .def("set_result",
           [](py::handle self, py::object value) { self.cast<ResultHandle&>().set_result(self, std::move(value)); },
           py::arg("result"))
      .def("set_exception",
           [](py::handle self, py::object error) {
             self.cast<ResultHandle&>().set_exception(self, std::move(error));
           },
           py::arg("exception"))
      .def("__await__",
           [](py::handle self) { return self.cast<ResultHandle&>().asyncio_future(self).attr("__await__")(); })
      .def("asyncio_future", [](py::handle self) { return self.cast<ResultHandle&>().asyncio_future(self); },
           "An asyncio future on the running loop that this handle sets (with every other request of its "
           "batch awaited on that loop, in one hand-off); cancelling it cancels the request if it has not "
           "started (read when a worker starts it, or when the handle's state is read). What `await handle` awaits, for code that needs the future itself (asyncio.gather "
           "takes it without wrapping it in a task).")
      .def("_cancel_if_cancelled",
           [](py::handle self, const py::object& future) { self.cast<ResultHandle&>().cancel_if_cancelled(self, future); })
      .def("as_future", [](py::handle self) { return observed(self).as_future(self); })
      .def_property_readonly("_condition", [](ResultHandle& h) { return h.futures_condition(); })
      .def_property_readonly("_waiters", [](ResultHandle& h) { return h.futures_waiters(); })
      .def_property_readonly("_state", [](py::handle self) { return observed(self).futures_state(); })
      .def("__repr__", [](py::handle self) { return self.cast<const ResultHandle&>().repr(self); })
      .def_readwrite("decision", &ResultHandle::decision);
}

}  // namespace fastroute::binding
