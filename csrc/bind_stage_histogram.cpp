// Binding of the stage histograms (stage_histogram.hpp): their bucket bounds,
// a latency histogram and the route stages Python records into, and the
// snapshot conversion the dispatcher's binding shares. Converts only.
#include <pybind11/pybind11.h>

#include <cstddef>
#include <cstdint>
#include <memory>

#include "binding.hpp"
#include "stage_histogram.hpp"

namespace fastroute::binding {

namespace {

template <std::size_t N>
py::tuple bounds_tuple(const std::array<std::int64_t, N>& bounds) {
  py::tuple out(N);
  for (std::size_t i = 0; i < N; ++i) out[i] = bounds[i];
  return out;
}

}  // namespace

py::tuple histogram_tuple(const HistogramSnapshot& snapshot) {
  py::tuple counts(snapshot.counts.size());
  for (std::size_t i = 0; i < snapshot.counts.size(); ++i) counts[i] = snapshot.counts[i];
  return py::make_tuple(counts, snapshot.sum);
}

void bind_stage_histogram(py::module_& m) {
  m.attr("LATENCY_BOUNDS_NS") = bounds_tuple(kLatencyBoundsNs);
  m.attr("BATCH_SIZE_BOUNDS") = bounds_tuple(kBatchSizeBounds);
  py::list lane_stages;  // ((name, bounds), ...): what Dispatcher.stages returns, in order
#define FASTROUTE_STAGE_BOUNDS(name, bounds) lane_stages.append(py::make_tuple(#name, bounds_tuple(bounds)));
  FASTROUTE_LANE_STAGES(FASTROUTE_STAGE_BOUNDS)
#undef FASTROUTE_STAGE_BOUNDS
  m.attr("LANE_STAGE_BOUNDS") = py::tuple(lane_stages);
  py::class_<Histogram>(m, "LatencyHistogram",
                        "Latencies in fixed buckets (LATENCY_BOUNDS_NS); thread-safe, lock-free.")
      .def(py::init([] { return std::make_unique<Histogram>(kLatencyBoundsNs); }))
      .def("record", &Histogram::record, py::arg("ns"), "Count one latency of `ns` nanoseconds.")
      .def(
          "snapshot", [](const Histogram& h) { return histogram_tuple(h.snapshot()); },
          "(counts per bucket, the last above every bound; sum of the values in ns).");
  py::class_<RouteStages>(m, "RouteStages",
                          "Analyze and decide latencies of routing decisions; thread-safe, lock-free.")
      .def(py::init<>())
      .def("record", &RouteStages::record, py::arg("started_ns"), py::arg("analyzed_ns"), py::arg("decided_ns"),
           "One decision's instants on monotonic_ns(): started, analysed, decided.")
      .def(
          "snapshot",
          [](const RouteStages& stages) {
            py::dict out;
            out["analyze"] = histogram_tuple(stages.analyze.snapshot());
            out["decide"] = histogram_tuple(stages.decide.snapshot());
            return out;
          },
          "{stage: (counts per bucket, sum in ns)} for analyze and decide.");
}

}  // namespace fastroute::binding
