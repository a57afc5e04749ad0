// Stage histograms: fixed-bucket histograms of how long each stage of a
// request took (queue wait, batch wait and execute, kept per lane by the
// dispatcher; analyze and decide when the router is asked to time them) and
// of batch sizes. Cheap enough to record per request on the hot path, read
// at scrape time (fastroute.serving.metrics turns them into Prometheus
// histograms).
//
// Memory ordering: each bucket count and the sum is its own atomic, updated
// with a relaxed fetch_add and read with relaxed loads. A reader sees every
// value whole and never decreasing, but not one consistent cut: a snapshot
// taken while values are recorded may count a value in its bucket and not
// yet in the sum (as with any Prometheus client's scrape). Nothing here
// waits or takes a lock; recording never allocates.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace fastroute {

// Upper bounds (inclusive: Prometheus' "le") of the latency buckets, in
// nanoseconds: 1 us to 10 s (routing takes microseconds, models milliseconds).
inline constexpr std::array<std::int64_t, 22> kLatencyBoundsNs = {
    1'000,         2'500,         5'000,         10'000,        25'000,        50'000,
    100'000,       250'000,       500'000,       1'000'000,     2'500'000,     5'000'000,
    10'000'000,    25'000'000,    50'000'000,    100'000'000,   250'000'000,   500'000'000,
    1'000'000'000, 2'500'000'000, 5'000'000'000, 10'000'000'000};
// Upper bounds of the batch size buckets: 1, 2, 4, ... 1024 requests.
inline constexpr std::array<std::int64_t, 11> kBatchSizeBounds = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};

struct HistogramSnapshot {
  std::vector<std::uint64_t> counts;  // per bucket, not cumulative; the last counts values above every bound
  std::uint64_t sum = 0;              // of the values recorded (a negative one counts as 0)
};

// A histogram over fixed bounds. Thread-safe: record and snapshot from any
// thread, lock-free, never blocking.
class Histogram {
 public:
  static constexpr std::size_t kMaxBounds = 24;

  // `bounds`: ascending, at most kMaxBounds, alive as long as the histogram
  // (one of the constants above). Throws InvalidInput otherwise.
  explicit Histogram(std::span<const std::int64_t> bounds);

  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  // Counts `value` in the first bucket whose bound is >= value. Never allocates.
  void record(std::int64_t value) noexcept;
  // Allocates the counts vector; throws std::bad_alloc only.
  HistogramSnapshot snapshot() const;
  std::span<const std::int64_t> bounds() const noexcept { return bounds_; }
  // Back to zero. Values recorded meanwhile may survive it partly: only for
  // a histogram nobody records into (a retired lane being reused).
  void reset() noexcept;

 private:
  std::span<const std::int64_t> bounds_;
  std::array<std::atomic<std::uint64_t>, kMaxBounds + 1> counts_{};
  std::atomic<std::uint64_t> sum_{0};
};

// A lane's (model replica's) stages: name and bounds, written once. Python
// reads the names through Dispatcher.stages (fastroute._core).
//   queue_wait: per request taken from the lane, from its push to the
//     batcher taking it; batch_wait: per batch, from taking its first request
//     to handing the batch to the sink (the wait for it to fill); batch_size:
//     per batch with requests to run, how many (recorded as the batch closes);
//     execute: per such batch, the sink's time on it (the model call and
//     delivering results; recorded once the sink returns, so it may show a
//     moment after the results do).
#define FASTROUTE_LANE_STAGES(X)    \
  X(queue_wait, kLatencyBoundsNs)   \
  X(batch_wait, kLatencyBoundsNs)   \
  X(execute, kLatencyBoundsNs)      \
  X(batch_size, kBatchSizeBounds)

// Recorded by the worker owning the lane (batcher.cpp, dispatcher.cpp), read
// by anyone. Thread-safe as Histogram is.
struct LaneStages {
#define FASTROUTE_STAGE_FIELD(name, bounds) Histogram name{bounds};
  FASTROUTE_LANE_STAGES(FASTROUTE_STAGE_FIELD)
#undef FASTROUTE_STAGE_FIELD

  // See Histogram::reset.
  void reset() noexcept;
};

struct LaneStagesSnapshot {
#define FASTROUTE_STAGE_SNAPSHOT(name, bounds) HistogramSnapshot name;
  FASTROUTE_LANE_STAGES(FASTROUTE_STAGE_SNAPSHOT)
#undef FASTROUTE_STAGE_SNAPSHOT
};

// Allocates; throws std::bad_alloc only.
LaneStagesSnapshot snapshot(const LaneStages& stages);

// The two stages of a routing decision, for a router asked to time them:
// analyze (features of the input) and decide (the policy's choice).
// Thread-safe as Histogram is.
struct RouteStages {
  Histogram analyze{kLatencyBoundsNs};
  Histogram decide{kLatencyBoundsNs};

  // One decision's three instants (monotonic ns): started, analysed, decided.
  void record(std::int64_t started_ns, std::int64_t analyzed_ns, std::int64_t decided_ns) noexcept {
    analyze.record(analyzed_ns - started_ns);
    decide.record(decided_ns - analyzed_ns);
  }
};

}  // namespace fastroute
