// The `fastroute._core` extension module: the error translation and the
// names shared by every part, then each component's binding.
#include <pybind11/pybind11.h>

#include <new>
#include <stdexcept>
#include <string>

#include "binding.hpp"
#include "errors.hpp"
#include "features.hpp"

namespace py = pybind11;

namespace fastroute::binding {

namespace {

// fastroute.errors, looked up once at import (that module imports nothing
// native, so no cycle).
py::handle errors_module() {
  PYBIND11_CONSTINIT static py::gil_safe_call_once_and_store<py::object> errors;
  return errors.call_once_and_store_result([] { return py::module_::import("fastroute.errors"); }).get_stored();
}

void raise_fastroute(const char* cls, const std::exception& e) noexcept {
  PyObject* type = PyObject_GetAttrString(errors_module().ptr(), cls);
  if (type == nullptr) return;  // the AttributeError stays set
  PyErr_SetString(type, e.what());
  Py_DECREF(type);
}

}  // namespace

void set_python_error(std::exception_ptr error) noexcept {
  try {
    std::rethrow_exception(error);
  } catch (py::error_already_set& e) {
    e.restore();
  } catch (const py::builtin_exception& e) {
    e.set_error();
  } catch (const CorruptFile& e) {
    raise_fastroute("CorruptFile", e);
  } catch (const InvalidInput& e) {
    raise_fastroute("InvalidInput", e);
  } catch (const UnsupportedInput& e) {
    raise_fastroute("UnsupportedInput", e);
  } catch (const Closed& e) {
    raise_fastroute("RouterClosed", e);
  } catch (const Exhausted& e) {
    raise_fastroute("Overloaded", e);
  } catch (const std::bad_alloc&) {
    PyErr_NoMemory();
  } catch (const std::out_of_range& e) {
    PyErr_SetString(PyExc_IndexError, e.what());
  } catch (const std::overflow_error& e) {
    PyErr_SetString(PyExc_OverflowError, e.what());
  } catch (const std::domain_error& e) {
    PyErr_SetString(PyExc_ValueError, e.what());
  } catch (const std::invalid_argument& e) {
    PyErr_SetString(PyExc_ValueError, e.what());
  } catch (const std::length_error& e) {
    PyErr_SetString(PyExc_ValueError, e.what());
  } catch (const std::range_error& e) {
    PyErr_SetString(PyExc_ValueError, e.what());
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
  } catch (...) {
    PyErr_SetString(PyExc_RuntimeError, "unknown C++ exception in fastroute._core");
  }
}

void register_error_translation() {
  errors_module();
  py::register_exception_translator([](std::exception_ptr error) {
    if (error) set_python_error(error);
  });
}

}  // namespace fastroute::binding

PYBIND11_MODULE(_core, m) {
  namespace binding = fastroute::binding;
  m.doc() = "fastroute's C++ core (private: use the fastroute package).";
  binding::register_error_translation();

  m.attr("FEATURE_NAMES") = binding::names_tuple(fastroute::kFeatureNames);
  m.attr("MODALITIES") = binding::names_tuple(fastroute::kModalityNames);
  m.attr("SCRIPTS") = binding::names_tuple(fastroute::kScriptNames);

  // Baseline for benchmarks: the cost of crossing the binding and nothing else.
  m.def("noop", [](py::handle) {}, py::arg("x"));

  binding::bind_scorer(m);
  binding::bind_fast_path(m);
  binding::bind_analyzer(m);
  binding::bind_dispatch(m);
  binding::bind_bandit(m);
  binding::bind_ngrams(m);
  binding::bind_linear(m);
  binding::bind_model_state(m);
  binding::bind_stage_histogram(m);
  binding::bind_result(m);
}
