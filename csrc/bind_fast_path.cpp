// Binding of the native request path (python/fastroute/decision/fast_path.py):
// one call analyses an input, lets the planned policy choose (RoutePlan,
// scorer.hpp), resolves the version the catalog precomputed, holds it when
// asked (infer, submit), records the decision in the feedback store's ring and
// builds the Decision, its reason left as a pair joined only when read; submit
// and ainfer also queue the request on the executor's RequestQueue
// (binding.hpp) in the same call.
//
// Two types:
// - FastRoutePlan (pybind11, made once per policy, policy state, catalog and
//   feedback store by fast_path.py): the RoutePlan and, per model index, the
//   Python objects a decision returns (name, version, cost, Resolved).
// - FastRoute (a plain CPython type whose methods are METH_FASTCALL: pybind11's
//   generic dispatcher costs a fifth of the whole call): holds the current
//   plan and asks its `replan` function for a new one whenever the policy, its
//   state, the catalog or the feedback store is no longer the plan's.
//
// Everything runs with the GIL held, as the Python it replaces did: the GIL
// guards the plan swap and the reason cache. The analysis of a large input
// releases it; the call then holds its own reference to the plan meanwhile.
// A FastRoute references no object that references it back (replan must be a
// plain function), so it needs no garbage-collector support.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "analyzer.hpp"
#include "binding.hpp"
#include "dispatcher.hpp"
#include "errors.hpp"
#include "features.hpp"
#include "model_state.hpp"
#include "parker.hpp"
#include "scorer.hpp"
#include "stage_histogram.hpp"

namespace fastroute::binding {

namespace {

// Attribute names, interned once at import.
struct Names {
  PyObject* catalog;  // Registry._catalog
  PyObject* state;    // a compiled policy's _state
  PyObject* model;    // the Decision's fields...
  PyObject* version;
  PyObject* modality;
  PyObject* reason;   // Decision._reason: a str, or the pair joined when read
  PyObject* score;
  PyObject* id;
  PyObject* propensity;
  PyObject* features;
};
Names names;
PyObject* modality_names[kModalityNames.size()];  // str per modality code
PyObject* propensity_one;                         // 1.0
PyObject* empty_tuple;

PyObject* interned(const char* text) {
  PyObject* name = PyUnicode_InternFromString(text);
  if (name == nullptr) throw py::error_already_set();
  return name;  // kept for the life of the process, as CPython keeps its own interned names
}

py::object steal_or_throw(PyObject* object) {
  if (object == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(object);
}

// What a decision on one model index returns, as the catalog resolved it.
struct PlannedModel {
  py::object name;      // str
  py::object version;   // str
  py::object cost;      // float or None: the feedback entry's cost
  py::object resolved;  // the catalog's Resolved, or None: the name needs the general path
  py::object spec;      // resolved.spec, or None
  py::object holds;     // resolved.in_flight.holds (a HoldCount), or None
  bool shadowed = false;
};

// One (policy, state, catalog, store)'s plan. Immutable but for the reason
// cache (guarded by the GIL).
struct FastRoutePlan {
  py::object policy, state, catalog, store;  // what the plan was made for
  bool reads_state = false;                  // a compiled policy: its _state is compared with `state`
  std::optional<RoutePlan> plan;             // none: the policy takes the general path
  std::vector<PlannedModel> models;
  bool plain = false;  // every registered name resolves plainly (see fast_path.py)
  py::object reason_of;  // (reason code, model index) -> (policy reason, version reason)
  std::unordered_map<std::int64_t, py::object> reasons;  // guarded by the GIL
  // The feedback store's plain ring (FeedbackStore.plain_ring()).
  py::object numbers, ring, token, clock;
  long long capacity = 1;

  // The reason pair for `reason` on model `index`, formatted once and kept.
  py::object reason(std::int32_t reason, std::int32_t index) {
    const std::int64_t key = static_cast<std::int64_t>(reason) * static_cast<std::int64_t>(models.size()) + index;
    const auto found = reasons.find(key);
    if (found != reasons.end()) return found->second;
    py::object pair = reason_of(reason, index);
    reasons.insert_or_assign(key, pair);
    return pair;
  }

  // Records one plain decision on `model` (FeedbackStore.record_plain, natively): its id.
  py::object record(const PlannedModel& model) const {
    const py::object number = steal_or_throw(PyIter_Next(numbers.ptr()));
    const long long value = PyLong_AsLongLong(number.ptr());
    if (value == -1 && PyErr_Occurred()) throw py::error_already_set();
    const py::object slot = steal_or_throw(PyLong_FromLongLong(value % capacity));
    const py::object created = steal_or_throw(PyObject_CallNoArgs(clock.ptr()));
    const py::object entry = steal_or_throw(
        PyTuple_Pack(5, number.ptr(), model.name.ptr(), propensity_one, model.cost.ptr(), created.ptr()));
    if (PyDict_SetItem(ring.ptr(), slot.ptr(), entry.ptr()) != 0) throw py::error_already_set();
    return steal_or_throw(PyUnicode_FromFormat("%U-%lld", token.ptr(), value));
  }
};

void set_field(PyObject* object, PyObject* name, PyObject* value) {
  // The generic setter: a frozen dataclass's own __setattr__ refuses every field.
  if (PyObject_GenericSetAttr(object, name, value) != 0) throw py::error_already_set();
}

struct FastRouteState {
  py::object registry;       // its _catalog is compared with the plan's
  py::object decision_type;  // fastroute.Decision
  py::object replan;         // replan(policy, catalog, store) -> FastRoutePlan
  py::object analyze;        // None: the native analyzer; else a stand-in analyze(x, hint) -> Analysis
  std::shared_ptr<FastRoutePlan> plan;  // guarded by the GIL

  // The plan for this request: the current one, or a new one when it is stale.
  std::shared_ptr<FastRoutePlan> current(PyObject* policy, PyObject* store, py::handle catalog) {
    std::shared_ptr<FastRoutePlan> found = plan;
    if (found && found->policy.ptr() == policy && found->store.ptr() == store && found->catalog.is(catalog) &&
        (!found->reads_state || state_of(policy).is(found->state))) {
      return found;
    }
    const py::object made = replan(py::handle(policy), catalog, py::handle(store));
    if (!py::isinstance<FastRoutePlan>(made)) throw py::type_error("replan() must return a FastRoutePlan");
    found = made.cast<std::shared_ptr<FastRoutePlan>>();
    plan = found;
    return found;
  }

  static py::object state_of(PyObject* policy) { return steal_or_throw(PyObject_GetAttr(policy, names.state)); }

  py::object catalog_now() const { return steal_or_throw(PyObject_GetAttr(registry.ptr(), names.catalog)); }
};

// A hold taken for a request, dropped unless the request takes it over.
class HoldGuard {
 public:
  explicit HoldGuard(py::handle holds) : holds_(holds) {}
  ~HoldGuard() {
    if (!holds_) return;
    PyObject *type, *value, *traceback;  // an error being raised survives the drop
    PyErr_Fetch(&type, &value, &traceback);
    try {
      drop_hold(holds_);
    } catch (py::error_already_set& error) {
      error.discard_as_unraisable(py::reinterpret_borrow<py::object>(holds_));
    } catch (...) {
      PyErr_SetString(PyExc_RuntimeError, "dropping a request's hold failed");
      PyErr_WriteUnraisable(holds_.ptr());
    }
    PyErr_Restore(type, value, traceback);
  }
  HoldGuard(HoldGuard&& other) noexcept : holds_(std::exchange(other.holds_, py::handle())) {}
  HoldGuard(const HoldGuard&) = delete;
  HoldGuard& operator=(const HoldGuard&) = delete;
  void release() noexcept { holds_ = py::handle(); }

 private:
  py::handle holds_;
};

struct FastRouteObject {
  PyObject_HEAD
  FastRouteState state;
};

FastRouteState& state_of(PyObject* self) { return reinterpret_cast<FastRouteObject*>(self)->state; }

Analysis stand_in_analysis(const py::object& analyze, PyObject* x, PyObject* hint) {
  const py::object analysis = analyze(py::handle(x), py::handle(hint));
  const Analysis* found = analysis_in(analysis);
  if (found == nullptr) throw py::type_error("the stand-in analyze() must return a fastroute.Analysis");
  return *found;
}

// What one plain request chose: the plan, the model, why, and what was analysed.
struct Chosen {
  std::shared_ptr<FastRoutePlan> plan;
  const PlannedModel* model;
  PlanChoice choice;
  Analysis analysis;
};

RouteStages* stages_in(PyObject* stages_arg) {
  if (stages_arg == Py_None) return nullptr;
  if (!py::isinstance<RouteStages>(stages_arg)) throw py::type_error("stages must be a RouteStages or None");
  return py::cast<RouteStages*>(stages_arg);
}

// The plan's choice for x, or none: take the general path (a Python policy, no model for
// the input, a name the catalog does not resolve plainly, a shadowed version when `hold`).
std::optional<Chosen> choose(FastRouteState& route, PyObject* policy, PyObject* store, PyObject* x, PyObject* hint,
                             PyObject* stages_arg, bool hold) {
  RouteStages* stages = stages_in(stages_arg);
  std::shared_ptr<FastRoutePlan> plan = route.current(policy, store, route.catalog_now());
  if (!plan->plan || (stages != nullptr && !plan->plain)) return std::nullopt;  // timed: never timed twice
  const std::int64_t started = stages != nullptr ? now_ns() : 0;
  const Analysis analysis = route.analyze.is_none() ? analyze_object(x, hint) : stand_in_analysis(route.analyze, x, hint);
  const std::int64_t analyzed = stages != nullptr ? now_ns() : 0;
  const PlanChoice choice = plan->plan->choose(analysis.features.data(), static_cast<std::size_t>(analysis.modality));
  if (stages != nullptr) stages->record(started, analyzed, now_ns());
  if (choice.model == kNoModel) return std::nullopt;
  const PlannedModel& model = plan->models[static_cast<std::size_t>(choice.model)];
  if (model.resolved.is_none() || (hold && model.shadowed)) return std::nullopt;
  return Chosen{std::move(plan), &model, choice, analysis};
}

// Holds the chosen version: the guard, or none when the catalog changed meanwhile (the
// hold is dropped again and the general path decides).
std::optional<HoldGuard> hold_chosen(FastRouteState& route, const Chosen& chosen) {
  hold_count_in(chosen.model->holds)->hold();
  std::optional<HoldGuard> held(std::in_place, chosen.model->holds);
  // Memory ordering (with the GIL as the only lock): the hold is checked against the catalog
  // the plan was made from. A version is hidden by publishing a new catalog before its
  // retirement waits for its holds to reach zero, so either the catalog is still the same
  // after the hold (that wait sees it) or the hold is dropped and the general path decides.
  if (!route.catalog_now().is(chosen.plan->catalog)) return std::nullopt;  // the guard drops the hold
  return held;
}

// The Decision for a chosen request, recorded in the feedback store's ring.
py::object decision_of(const FastRouteState& route, const Chosen& chosen) {
  const PlannedModel& model = *chosen.model;
  const py::object reason = chosen.plan->reason(chosen.choice.reason, chosen.choice.model);
  const py::object id = chosen.plan->record(model);
  const py::object analysis_obj = analysis_object(chosen.analysis);
  const double score = chosen.choice.score;
  const py::object score_obj = std::isnan(score) ? py::object(py::none()) : py::object(py::float_(score));
  auto* type = reinterpret_cast<PyTypeObject*>(route.decision_type.ptr());
  const py::object decision = steal_or_throw(PyBaseObject_Type.tp_new(type, empty_tuple, nullptr));
  set_field(decision.ptr(), names.model, model.name.ptr());
  set_field(decision.ptr(), names.version, model.version.ptr());
  set_field(decision.ptr(), names.modality, modality_names[static_cast<std::size_t>(chosen.analysis.modality)]);
  set_field(decision.ptr(), names.reason, reason.ptr());
  set_field(decision.ptr(), names.score, score_obj.ptr());
  set_field(decision.ptr(), names.id, id.ptr());
  set_field(decision.ptr(), names.propensity, propensity_one);
  set_field(decision.ptr(), names.features, analysis_obj.ptr());
  return decision;
}

// What a native call returns.
enum class Returns { kDecision, kDecisionAndHeld, kHeld };

// route()/hold()/hold_only()'s shared work: the Decision, the Resolved held for
// the request, or both; None: take the general path.
py::object decide(PyObject* self, PyObject* const* args, Py_ssize_t nargs, Returns returns) {
  if (nargs != 5) {
    throw py::type_error("FastRoute.route(), hold() and hold_only() take 5 arguments (policy, store, x, hint, "
                         "stages), got " + std::to_string(nargs));
  }
  const bool hold = returns != Returns::kDecision;
  FastRouteState& route = state_of(self);
  const std::optional<Chosen> chosen = choose(route, args[0], args[1], args[2], args[3], args[4], hold);
  if (!chosen) return py::none();
  if (!hold) return decision_of(route, *chosen);
  std::optional<HoldGuard> held = hold_chosen(route, *chosen);
  if (!held) return py::none();
  if (returns == Returns::kHeld) {  // no Decision made: nothing can read it or its feedback id
    held->release();  // the caller ends the hold
    return chosen->model->resolved;
  }
  const py::object decision = decision_of(route, *chosen);
  py::object pair = steal_or_throw(PyTuple_Pack(2, decision.ptr(), chosen->model->resolved.ptr()));
  held->release();  // the caller ends the hold (Resolved.run_held, Resolved.settle)
  return pair;
}

// What the one-call enqueue returns.
enum class Enqueued { kHandle, kAsyncioFuture };

// submit()/ainfer(): route, hold, then queue on the executor's RequestQueue in the same call;
// the handle (with its Decision) or its asyncio future; None: the general path (the native
// path declines, the spec's lanes are not started or has several replicas, an unknown
// priority, or for ainfer a full or closed queue: the general path waits for room or says
// why). A refused submit raises the executor's refusal (Overloaded, RouterClosed) with the
// hold released and no waiting entry left.
py::object enqueue(PyObject* self, PyObject* const* args, Py_ssize_t nargs, Enqueued returns) {
  if (nargs != 8) {
    throw py::type_error("FastRoute.submit() and ainfer() take 8 arguments (policy, store, x, hint, stages, queue, "
                         "priority, deadline), got " + std::to_string(nargs));
  }
  PyObject *x = args[2], *queue_arg = args[5], *priority = args[6], *deadline = args[7];
  if (queue_arg == Py_None) return py::none();
  if (!py::isinstance<RequestQueue>(queue_arg)) throw py::type_error("queue must be a RequestQueue or None");
  RequestQueue& queue = py::cast<RequestQueue&>(queue_arg);
  const std::optional<bool> high = queue.is_high(priority);
  if (!high) return py::none();  // the general path names what is wrong
  const std::int64_t deadline_ns = queue.deadline_ns(deadline);
  FastRouteState& route = state_of(self);
  const std::optional<Chosen> chosen = choose(route, args[0], args[1], x, args[3], args[4], true);
  if (!chosen) return py::none();
  const PlannedModel& model = *chosen->model;
  const std::optional<std::size_t> lane = queue.only_lane(model.spec);
  if (!lane) return py::none();
  std::optional<HoldGuard> held = hold_chosen(route, *chosen);
  if (!held) return py::none();
  // Made before the push, as the general path records a refused request's decision too.
  const py::object decision = returns == Enqueued::kHandle ? decision_of(route, *chosen) : py::none();
  auto [status, handle] = queue.push(model.spec, x, *lane, *high, deadline_ns, 0.0);
  if (status != PushStatus::kAccepted) {  // the guard drops the hold
    if (returns == Enqueued::kAsyncioFuture) return py::none();
    const py::object error = queue.refusal(model.spec, status, priority, Py_None);
    PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(error.ptr())), error.ptr());
    throw py::error_already_set();
  }
  // Queued: the hold now ends with the request (the count itself is the done-callback).
  // Until this returns the GIL is held, so no worker can have settled it; if one did
  // (a collection running Python code), add_done_callback calls the count at once.
  link_result_handle(handle, decision, model.holds);
  held->release();
  if (returns == Enqueued::kAsyncioFuture) return result_handle_asyncio_future(handle);
  return std::move(handle);
}

PyObject* route_fastcall(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  return guarded([&] { return decide(self, args, nargs, Returns::kDecision); });
}

PyObject* hold_fastcall(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  return guarded([&] { return decide(self, args, nargs, Returns::kDecisionAndHeld); });
}

PyObject* hold_only_fastcall(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  return guarded([&] { return decide(self, args, nargs, Returns::kHeld); });
}

PyObject* submit_fastcall(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  return guarded([&] { return enqueue(self, args, nargs, Enqueued::kHandle); });
}

PyObject* ainfer_fastcall(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  return guarded([&] { return enqueue(self, args, nargs, Enqueued::kAsyncioFuture); });
}

PyMethodDef kFastRouteMethods[] = {
    {"route", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(route_fastcall)), METH_FASTCALL,
     "route(policy, store, x, hint, stages)\n--\n\n"
     "The Decision for x (recorded in store's ring), or None: take the general path. With stages (a\n"
     "RouteStages), the analysis and the choice are timed into it. Raises what analyze(x, hint) raises."},
    {"hold", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(hold_fastcall)), METH_FASTCALL,
     "hold(policy, store, x, hint, stages)\n--\n\n"
     "route(), plus the chosen version held: (Decision, Resolved), or None. The caller ends the\n"
     "hold exactly once (Resolved.run_held, or its in_flight.holds as the request's done-callback)."},
    {"hold_only", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(hold_only_fastcall)), METH_FASTCALL,
     "hold_only(policy, store, x, hint, stages)\n--\n\n"
     "hold() for a request whose decision no one reads (ainfer without return_decision): the Resolved\n"
     "held, or None; no Decision is made and nothing is recorded."},
    {"submit", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(submit_fastcall)), METH_FASTCALL,
     "submit(policy, store, x, hint, stages, queue, priority, deadline)\n--\n\n"
     "hold(), then x queued on queue (the executor's RequestQueue) in the same call: its ResultHandle,\n"
     "its decision set and the hold ending with it; or None: take the general path (also for a spec\n"
     "not started yet or with several replicas). A full or closed queue raises the executor's\n"
     "refusal (Overloaded, RouterClosed), the hold released."},
    {"ainfer", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(ainfer_fastcall)), METH_FASTCALL,
     "ainfer(policy, store, x, hint, stages, queue, priority, deadline)\n--\n\n"
     "submit() for a request whose decision no one reads: the handle's asyncio future on the running\n"
     "loop; or None: the general path (also when the queue is full or closed: it waits for room)."},
    {nullptr, nullptr, 0, nullptr},
};

PyType_Slot kFastRouteSlots[] = {
    {Py_tp_doc, const_cast<char*>(
                    "FastRoute(registry, decision_type, replan, analyze=None)\n--\n\n"
                    "The native request path of one router (see fastroute.decision.fast_path). replan(policy,\n"
                    "catalog, store) -> FastRoutePlan is called whenever the current plan is stale; it must not\n"
                    "reference this object (a plain function). analyze: None (the native analyzer) or a stand-in\n"
                    "analyze(x, hint) returning a fastroute.Analysis (tests that route plain values).")},
    {Py_tp_new, reinterpret_cast<void*>(+[](PyTypeObject* type, PyObject* args, PyObject* kwargs) -> PyObject* {
       PyObject *registry = nullptr, *decision_type = nullptr, *replan = nullptr, *analyze = Py_None;
       static const char* keywords[] = {"registry", "decision_type", "replan", "analyze", nullptr};
       if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO!O|O:FastRoute", const_cast<char**>(keywords), &registry,
                                        &PyType_Type, &decision_type, &replan, &analyze)) {
         return nullptr;
       }
       PyObject* self = type->tp_alloc(type, 0);
       if (self == nullptr) return nullptr;
       new (&state_of(self)) FastRouteState{py::reinterpret_borrow<py::object>(registry),
                                            py::reinterpret_borrow<py::object>(decision_type),
                                            py::reinterpret_borrow<py::object>(replan),
                                            py::reinterpret_borrow<py::object>(analyze), nullptr};
       return self;
     })},
    {Py_tp_dealloc, reinterpret_cast<void*>(+[](PyObject* self) {
       PyTypeObject* type = Py_TYPE(self);
       state_of(self).~FastRouteState();
       type->tp_free(self);
       Py_DECREF(type);
     })},
    {Py_tp_methods, kFastRouteMethods},
    {0, nullptr},
};

PyType_Spec kFastRouteSpec = {"fastroute.FastRoute", sizeof(FastRouteObject), 0, Py_TPFLAGS_DEFAULT,
                              kFastRouteSlots};

PlannedModel planned_model(py::handle name, py::handle resolved, py::handle cost) {
  PlannedModel model{py::reinterpret_borrow<py::object>(name), py::none(), py::reinterpret_borrow<py::object>(cost),
                     py::reinterpret_borrow<py::object>(resolved), py::none(), py::none(), false};
  if (!PyUnicode_Check(name.ptr())) throw InvalidInput("a planned model name must be a str");
  if (resolved.is_none()) return model;
  model.spec = resolved.attr("spec");
  model.version = model.spec.attr("version");
  model.holds = resolved.attr("in_flight").attr("holds");
  model.shadowed = resolved.attr("shadowed").cast<bool>();
  if (hold_count_in(model.holds) == nullptr) throw InvalidInput("InFlight.holds must be a HoldCount");
  return model;
}

std::shared_ptr<FastRoutePlan> make_plan(py::object policy, py::object state, bool reads_state, py::object catalog,
                                         py::object store,
                                         std::optional<RoutePlan> plan, py::sequence models, py::sequence resolved,
                                         py::sequence costs, bool plain, py::object reason_of, py::tuple ring) {
  auto made = std::make_shared<FastRoutePlan>();
  made->policy = std::move(policy);
  made->state = std::move(state);
  made->reads_state = reads_state;
  made->catalog = std::move(catalog);
  made->store = std::move(store);
  made->plain = plain;
  made->reason_of = std::move(reason_of);
  if (models.size() != resolved.size() || models.size() != costs.size())
    throw InvalidInput("a plan needs one resolved version and one cost per model");
  if (plan && plan->num_models() != models.size())
    throw InvalidInput("the route plan chooses among " + std::to_string(plan->num_models()) + " models, " +
                       std::to_string(models.size()) + " are named");
  for (std::size_t i = 0; i < models.size(); ++i) made->models.push_back(planned_model(models[i], resolved[i], costs[i]));
  made->plan = std::move(plan);
  if (ring.size() != 5) throw InvalidInput("the feedback ring is (numbers, ring, capacity, token, clock)");
  made->numbers = ring[0];
  made->ring = ring[1];
  made->capacity = ring[2].cast<long long>();
  if (made->capacity < 1) throw InvalidInput("the feedback ring's capacity must be positive");
  made->token = ring[3];
  made->clock = ring[4];
  if (!PyDict_Check(made->ring.ptr()) || !PyUnicode_Check(made->token.ptr()))
    throw InvalidInput("the feedback ring is (numbers, a dict, capacity, a str token, clock)");
  return made;
}

}  // namespace

void bind_fast_path(py::module_& m) {
  names = {interned("_catalog"), interned("_state"),                          interned("model"),
           interned("version"),  interned("modality"),    interned("_reason"), interned("score"),
           interned("id"),       interned("propensity"),  interned("features")};
  for (std::size_t code = 0; code < kModalityNames.size(); ++code) {
    modality_names[code] = interned(std::string(kModalityNames[code]).c_str());
  }
  propensity_one = steal_or_throw(PyFloat_FromDouble(1.0)).release().ptr();
  empty_tuple = steal_or_throw(PyTuple_New(0)).release().ptr();

  py::class_<RoutePlan>(m, "RoutePlan",
                        "What decides a plain request natively: a compiled scorer among the models a per-modality "
                        "mask allows, or a fixed model per modality code (by_modality).")
      .def(py::init([](std::shared_ptr<Scorer> scorer, std::shared_ptr<ModelMask> mask) {
             return RoutePlan(std::move(scorer), std::move(mask));
           }),
           py::arg("scorer"), py::arg("mask") = nullptr)
      .def_static("by_modality",
                  [](std::vector<std::int32_t> model_by_modality, std::size_t num_models) {
                    return RoutePlan(std::move(model_by_modality), num_models);
                  },
                  py::arg("model_by_modality"), py::arg("num_models"),
                  "model_by_modality[code]: the model index serving modality code `code`, or NO_MODEL.")
      .def_property_readonly("num_models", &RoutePlan::num_models)
      .def("choose",
           [](const RoutePlan& plan, py::handle x, py::handle hint) {
             const Analysis analysis = analyze_object(x, hint);
             const PlanChoice choice = plan.choose(analysis.features.data(), static_cast<std::size_t>(analysis.modality));
             return py::make_tuple(choice.model, choice.score, choice.reason);
           },
           py::arg("x"), py::arg("hint") = py::none(),
           "(model, score, reason) for one input: analyze(x, hint), then the plan's choice.");

  py::class_<FastRoutePlan, std::shared_ptr<FastRoutePlan>>(
      m, "FastRoutePlan",
      "One policy, policy state, catalog and feedback store's native plan (see fastroute.decision.fast_path).")
      .def(py::init(&make_plan), py::arg("policy"), py::arg("state"), py::arg("reads_state"), py::arg("catalog"), py::arg("store"),
           py::arg("plan"), py::arg("models"), py::arg("resolved"), py::arg("costs"), py::arg("plain"),
           py::arg("reason_of"), py::arg("ring"))
      .def_property_readonly("native", [](const FastRoutePlan& plan) { return plan.plan.has_value(); })
      .def_property_readonly("plain", [](const FastRoutePlan& plan) { return plan.plain; });

  py::object type = steal_or_throw(PyType_FromSpec(&kFastRouteSpec));
  m.attr("FastRoute") = type;
}

}  // namespace fastroute::binding
