// The only file that knows Python: it converts arguments, checks buffers at
// the boundary, releases the GIL around native work and converts back.
#include <pybind11/pybind11.h>
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include "analyzer.hpp"
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
    }
  });
}

template <std::size_t N>
py::tuple names_tuple(const std::array<std::string_view, N>& names) {
  py::tuple out(N);
  for (std::size_t i = 0; i < N; ++i) out[i] = py::str(names[i].data(), names[i].size());
  return out;
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
}
