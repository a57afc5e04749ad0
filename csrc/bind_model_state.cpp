// Bindings of the live model state (model_state.hpp): the circuit breaker,
// the retry budget, the names of their states and reasons, and the lease
// count (HoldCount, a plain CPython type: a request's done-callback drops its
// hold without a Python frame). Converts and dispatches only.
#include <pybind11/pybind11.h>

#include <iterator>
#include <memory>
#include <new>
#include <string>

#include "batcher.hpp"
#include "binding.hpp"
#include "errors.hpp"
#include "model_state.hpp"

namespace fastroute::binding {

namespace {

template <typename Names>
py::tuple names_of(const Names& names) {
  py::tuple out(std::size(names));
  for (std::size_t i = 0; i < std::size(names); ++i) out[i] = py::str(names[i]);
  return out;
}

std::int64_t seconds_as_ns(double seconds, const char* what) {
  if (!(seconds > 0 && seconds < kNoDeadlineFromSeconds)) {
    throw InvalidInput(std::string("breaker ") + what + " must be a positive number of seconds");
  }
  return static_cast<std::int64_t>(seconds * 1e9);
}

py::dict breaker_snapshot(const CircuitBreaker& breaker) {
  const BreakerSnapshot s = breaker.snapshot();
  py::dict out;
  out["state"] = kBreakerStateNames[static_cast<int>(s.state)];
  out["window_calls"] = s.window_calls;
  out["window_failures"] = s.window_failures;
  out["opened"] = s.opened;
  out["closed"] = s.closed;
  out["rejected"] = s.rejected;
  out["last_change_ns"] = s.last_change_ns;
  return out;
}

// ---- HoldCount: the Python type --------------------------------------------------
// on_drained (a callable, or None) is called, with no arguments, by the drop that
// ends the last hold of a retiring version. It may reference the HoldCount's owner
// (the type takes part in garbage collection).
struct HoldCountObject {
  PyObject_HEAD
  HoldCount holds;
  PyObject* on_drained;  // owned; null once cleared
};

PyTypeObject* hold_count_type = nullptr;  // created at import; the module owns it

HoldCountObject* as_hold_count(PyObject* self) { return reinterpret_cast<HoldCountObject*>(self); }

PyObject* hold_method(PyObject* self, PyObject*) {
  as_hold_count(self)->holds.hold();
  Py_RETURN_NONE;
}

PyObject* drop_method(PyObject* self, PyObject*) {
  return guarded([&] {
    drop_hold(self);
    return py::object(py::none());
  });
}

PyObject* mark_retiring_method(PyObject* self, PyObject*) {
  as_hold_count(self)->holds.mark_retiring();
  Py_RETURN_NONE;
}

PyMethodDef kHoldCountMethods[] = {
    {"hold", hold_method, METH_NOARGS, "Count one more request holding the version. Lock-free, never fails."},
    {"drop", drop_method, METH_NOARGS,
     "End one hold (exactly once per hold); the last of a retiring version calls on_drained(). InvalidInput "
     "if nothing is held."},
    {"mark_retiring", mark_retiring_method, METH_NOARGS,
     "From now on, the drop ending the last hold calls on_drained()."},
    {nullptr, nullptr, 0, nullptr},
};

PyGetSetDef kHoldCountGetters[] = {
    {"count", [](PyObject* self, void*) { return PyLong_FromLongLong(as_hold_count(self)->holds.count()); }, nullptr,
     "Requests holding the version now.", nullptr},
    {"retiring", [](PyObject* self, void*) { return PyBool_FromLong(as_hold_count(self)->holds.retiring()); },
     nullptr, "Whether mark_retiring() was called.", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

PyType_Slot kHoldCountSlots[] = {
    {Py_tp_doc, const_cast<char*>(
                    "HoldCount(on_drained=None)\n--\n\n"
                    "How many requests hold one model version (lock-free). Calling it with any arguments drops one\n"
                    "hold, so it can be a request's done-callback: handle.add_done_callback(holds).")},
    {Py_tp_new, reinterpret_cast<void*>(+[](PyTypeObject* type, PyObject* args, PyObject* kwargs) -> PyObject* {
       PyObject* on_drained = Py_None;
       static const char* keywords[] = {"on_drained", nullptr};
       if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O:HoldCount", const_cast<char**>(keywords), &on_drained)) {
         return nullptr;
       }
       PyObject* self = type->tp_alloc(type, 0);  // tracked by the collector
       if (self == nullptr) return nullptr;
       new (&as_hold_count(self)->holds) HoldCount();
       Py_INCREF(on_drained);
       as_hold_count(self)->on_drained = on_drained;
       return self;
     })},
    {Py_tp_call, reinterpret_cast<void*>(+[](PyObject* self, PyObject*, PyObject*) { return drop_method(self, nullptr); })},
    {Py_tp_traverse, reinterpret_cast<void*>(+[](PyObject* self, visitproc visit, void* arg) -> int {
       Py_VISIT(as_hold_count(self)->on_drained);
       Py_VISIT(Py_TYPE(self));
       return 0;
     })},
    {Py_tp_clear, reinterpret_cast<void*>(+[](PyObject* self) -> int {
       Py_CLEAR(as_hold_count(self)->on_drained);
       return 0;
     })},
    {Py_tp_dealloc, reinterpret_cast<void*>(+[](PyObject* self) {
       PyTypeObject* type = Py_TYPE(self);
       PyObject_GC_UnTrack(self);
       Py_CLEAR(as_hold_count(self)->on_drained);
       type->tp_free(self);
       Py_DECREF(type);
     })},
    {Py_tp_methods, kHoldCountMethods},
    {Py_tp_getset, kHoldCountGetters},
    {0, nullptr},
};

PyType_Spec kHoldCountSpec = {"fastroute.HoldCount", sizeof(HoldCountObject), 0,
                              Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC, kHoldCountSlots};

}  // namespace

HoldCount* hold_count_in(py::handle object) noexcept {
  return Py_IS_TYPE(object.ptr(), hold_count_type) ? &as_hold_count(object.ptr())->holds : nullptr;
}

void drop_hold(py::handle holds_object) {
  HoldCount* holds = hold_count_in(holds_object);
  if (holds == nullptr) throw py::type_error("not a HoldCount");
  const DropOutcome outcome = holds->drop();
  if (outcome == DropOutcome::kNotHeld) {
    throw InvalidInput("HoldCount.drop(): no hold to drop (each hold is dropped exactly once)");
  }
  PyObject* on_drained = as_hold_count(holds_object.ptr())->on_drained;
  if (outcome == DropOutcome::kDrained && on_drained != nullptr && on_drained != Py_None) {
    const py::object keep = py::reinterpret_borrow<py::object>(on_drained);  // alive through the call
    PyObject* returned = PyObject_CallNoArgs(on_drained);
    if (returned == nullptr) throw py::error_already_set();
    Py_DECREF(returned);
  }
}

void bind_model_state(py::module_& m) {
  m.attr("EWMA_WEIGHT") = kEwmaWeight;
  m.attr("SERVICE_STALE_S") = static_cast<double>(kServiceStaleNs) / 1e9;
  m.attr("BREAKER_STATES") = names_of(kBreakerStateNames);
  m.attr("CHOICE_REASONS") = names_of(kChoiceReasonNames);
  py::object hold_count = py::reinterpret_steal<py::object>(PyType_FromSpec(&kHoldCountSpec));
  if (!hold_count) throw py::error_already_set();
  hold_count_type = reinterpret_cast<PyTypeObject*>(hold_count.ptr());
  m.attr("HoldCount") = hold_count;

  py::class_<CircuitBreaker, std::shared_ptr<CircuitBreaker>>(m, "CircuitBreaker")
      .def(py::init([](double failure_rate, std::uint32_t min_calls, double window_s, double cooldown_s,
                       std::uint32_t probes) {
             BreakerConfig config{failure_rate, min_calls, seconds_as_ns(window_s, "window"),
                                  seconds_as_ns(cooldown_s, "cooldown"), probes};
             return std::make_shared<CircuitBreaker>(config);
           }),
           py::arg("failure_rate"), py::arg("min_calls"), py::arg("window_s"), py::arg("cooldown_s"),
           py::arg("probes"))
      .def("admit", [](CircuitBreaker& b, std::int64_t now_ns) { return static_cast<int>(b.admit(now_ns)); },
           py::arg("now_ns"), "0: allowed, 1: a probe (report it as one), 2: rejected.")
      .def("would_admit", &CircuitBreaker::would_admit, py::arg("now_ns"))
      .def("record", &CircuitBreaker::record, py::arg("ok"), py::arg("probe"), py::arg("now_ns"))
      .def("cancel_probe", &CircuitBreaker::cancel_probe)
      .def_property_readonly("state", [](const CircuitBreaker& b) { return static_cast<int>(b.state()); })
      .def("snapshot", &breaker_snapshot);

  py::class_<RetryBudget, std::shared_ptr<RetryBudget>>(m, "RetryBudget")
      .def(py::init<double, double>(), py::arg("ratio"), py::arg("burst"))
      .def("on_request", &RetryBudget::on_request)
      .def("try_spend", &RetryBudget::try_spend)
      .def_property_readonly("balance", &RetryBudget::balance);
}

}  // namespace fastroute::binding
