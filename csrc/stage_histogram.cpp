#include "stage_histogram.hpp"

#include <algorithm>
#include <string>

#include "errors.hpp"

namespace fastroute {

Histogram::Histogram(std::span<const std::int64_t> bounds) : bounds_(bounds) {
  if (bounds.size() > kMaxBounds || !std::is_sorted(bounds.begin(), bounds.end()) ||
      std::adjacent_find(bounds.begin(), bounds.end()) != bounds.end()) {
    throw InvalidInput("histogram bounds must be strictly ascending, at most " + std::to_string(kMaxBounds));
  }
}

void Histogram::record(std::int64_t value) noexcept {
  const auto bucket = std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  counts_[static_cast<std::size_t>(bucket)].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(static_cast<std::uint64_t>(std::max<std::int64_t>(value, 0)), std::memory_order_relaxed);
}

HistogramSnapshot Histogram::snapshot() const {
  HistogramSnapshot out;
  out.counts.resize(bounds_.size() + 1);
  for (std::size_t i = 0; i < out.counts.size(); ++i) out.counts[i] = counts_[i].load(std::memory_order_relaxed);
  out.sum = sum_.load(std::memory_order_relaxed);
  return out;
}

void Histogram::reset() noexcept {
  for (auto& count : counts_) count.store(0, std::memory_order_relaxed);
  sum_.store(0, std::memory_order_relaxed);
}

void LaneStages::reset() noexcept {
#define FASTROUTE_STAGE_RESET(name, bounds) name.reset();
  FASTROUTE_LANE_STAGES(FASTROUTE_STAGE_RESET)
#undef FASTROUTE_STAGE_RESET
}

LaneStagesSnapshot snapshot(const LaneStages& stages) {
  LaneStagesSnapshot out;
#define FASTROUTE_STAGE_READ(name, bounds) out.name = stages.name.snapshot();
  FASTROUTE_LANE_STAGES(FASTROUTE_STAGE_READ)
#undef FASTROUTE_STAGE_READ
  return out;
}

}  // namespace fastroute
