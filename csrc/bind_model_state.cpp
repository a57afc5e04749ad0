// Bindings of the live model state (model_state.hpp): the circuit breaker,
// the retry budget and the names of their states and reasons. Converts and
// dispatches only.
#include <pybind11/pybind11.h>

#include <iterator>
#include <memory>
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

}  // namespace

void bind_model_state(py::module_& m) {
  m.attr("EWMA_WEIGHT") = kEwmaWeight;
  m.attr("SERVICE_STALE_S") = static_cast<double>(kServiceStaleNs) / 1e9;
  m.attr("BREAKER_STATES") = names_of(kBreakerStateNames);
  m.attr("CHOICE_REASONS") = names_of(kChoiceReasonNames);

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
