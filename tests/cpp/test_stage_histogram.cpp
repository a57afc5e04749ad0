// Stage histograms: bucket edges, many-thread recording (checksums under
// TSan), and the dispatcher's recording points: every request's queue wait,
// one batch wait, execute and size per batch, reset when a lane is reused.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <numeric>
#include <thread>
#include <vector>

#include "check.hpp"
#include "dispatcher.hpp"
#include "errors.hpp"
#include "stage_histogram.hpp"

using namespace fastroute;

namespace {

std::uint64_t count_of(const HistogramSnapshot& s) { return std::accumulate(s.counts.begin(), s.counts.end(), 0ULL); }

void buckets_are_inclusive_upper_bounds() {
  Histogram h(kLatencyBoundsNs);
  h.record(0);
  h.record(1'000);    // on the first bound: its bucket
  h.record(1'001);    // just above: the next
  h.record(10'000'000'001);  // above every bound: the last bucket
  h.record(-7);       // a clock going backwards: the first bucket, 0 in the sum
  const HistogramSnapshot s = h.snapshot();
  CHECK(s.counts.size() == kLatencyBoundsNs.size() + 1);
  CHECK(s.counts[0] == 3 && s.counts[1] == 1 && s.counts.back() == 1);
  CHECK(count_of(s) == 5);
  CHECK(s.sum == 1'000 + 1'001 + 10'000'000'001ULL);
  h.reset();
  CHECK(count_of(h.snapshot()) == 0 && h.snapshot().sum == 0);

  Histogram sizes(kBatchSizeBounds);
  for (std::int64_t size : {1, 2, 3, 32, 33, 5000}) sizes.record(size);
  const HistogramSnapshot b = sizes.snapshot();
  CHECK(b.counts[0] == 1 && b.counts[1] == 1 && b.counts[2] == 1);  // 1 | 2 | 3 (le 4)
  CHECK(b.counts[5] == 1 && b.counts[6] == 1 && b.counts.back() == 1);  // 32 | 33 (le 64) | 5000 (+Inf)
  CHECK(b.sum == 1 + 2 + 3 + 32 + 33 + 5000);
}

void bad_bounds_are_refused() {
  const std::int64_t descending[] = {5, 3};
  const std::int64_t repeated[] = {1, 1};
  const std::vector<std::int64_t> too_many(Histogram::kMaxBounds + 1, 0);
  for (auto bounds : {std::span<const std::int64_t>(descending), std::span<const std::int64_t>(repeated),
                      std::span<const std::int64_t>(too_many)}) {
    bool refused = false;
    try {
      Histogram h(bounds);
    } catch (const InvalidInput&) {
      refused = true;
    }
    CHECK(refused);
  }
}

void many_threads_lose_nothing() {
  Histogram h(kLatencyBoundsNs);
  RouteStages route;
  constexpr int kThreads = 8;
  constexpr std::int64_t kPerThread = 20'000;
  std::atomic<bool> reading{true};
  std::thread reader([&] {  // scrapes meanwhile: counts only grow
    std::uint64_t last = 0;
    while (reading.load()) {
      const std::uint64_t now = count_of(h.snapshot());
      CHECK(now >= last);
      last = now;
    }
  });
  std::vector<std::thread> writers;
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([&, t] {
      for (std::int64_t i = 0; i < kPerThread; ++i) {
        h.record(i * 1'000 + t);
        route.record(i, i + 3, i + 10);
      }
    });
  }
  for (auto& w : writers) w.join();
  reading.store(false);
  reader.join();
  const HistogramSnapshot s = h.snapshot();
  CHECK(count_of(s) == kThreads * kPerThread);
  std::uint64_t expected_sum = 0;
  for (int t = 0; t < kThreads; ++t) {
    for (std::int64_t i = 0; i < kPerThread; ++i) expected_sum += static_cast<std::uint64_t>(i * 1'000 + t);
  }
  CHECK(s.sum == expected_sum);
  CHECK(count_of(route.analyze.snapshot()) == kThreads * kPerThread);
  CHECK(route.analyze.snapshot().sum == 3ULL * kThreads * kPerThread);
  CHECK(route.decide.snapshot().sum == 7ULL * kThreads * kPerThread);
}

void wait_until(const std::atomic<std::size_t>& value, std::size_t target) {
  while (value.load() < target) std::this_thread::sleep_for(std::chrono::microseconds(50));
}

void dispatcher_records_each_request_and_batch() {
  constexpr std::size_t kRequests = 1000;
  std::atomic<std::size_t> done{0};
  std::atomic<std::size_t> batches{0};
  DispatchConfig config;
  config.threads = 3;
  config.max_batch = 8;
  config.max_delay_us = 50;
  Dispatcher dispatcher(config, for_each_batch([&](const Batch& batch) {
    batches += 1;
    done += batch.size();
  }));
  const std::size_t lanes[] = {dispatcher.add_lane(), dispatcher.add_lane()};
  std::vector<std::thread> producers;
  for (int p = 0; p < 4; ++p) {
    producers.emplace_back([&, p] {
      for (std::size_t i = 0; i < kRequests / 4; ++i) {
        while (dispatcher.try_push(lanes[i % 2], i, p % 2 ? Priority::kHigh : Priority::kNormal) != PushStatus::kAccepted) {
          std::this_thread::yield();
        }
      }
    });
  }
  for (auto& p : producers) p.join();
  wait_until(done, kRequests);
  dispatcher.close(true);  // the last batch's finish is recorded before close returns
  std::uint64_t waited = 0, sized = 0, size_sum = 0, executed = 0, batch_waits = 0;
  for (std::size_t lane : lanes) {
    const LaneStagesSnapshot s = dispatcher.stages(lane);
    waited += count_of(s.queue_wait);
    batch_waits += count_of(s.batch_wait);
    executed += count_of(s.execute);
    sized += count_of(s.batch_size);
    size_sum += s.batch_size.sum;
    CHECK(s.batch_size.counts[4] == 0);  // no batch above max_batch (8, le 8 is bucket 3)
  }
  CHECK(waited == kRequests);      // every request's queue wait
  CHECK(size_sum == kRequests);    // every request ran in one counted batch
  CHECK(sized == batches.load() && executed == batches.load() && batch_waits == batches.load());
}

DispatchConfig one_worker() {
  DispatchConfig config;
  config.threads = 1;
  return config;
}

void expired_requests_wait_but_do_not_run() {
  std::atomic<std::size_t> done{0};
  Dispatcher dispatcher(one_worker(), for_each_batch([&](const Batch& batch) { done += batch.size(); }));
  const std::size_t lane = dispatcher.add_lane();
  CHECK(dispatcher.try_push(lane, 1, Priority::kNormal, now_ns() - 1) == PushStatus::kAccepted);  // already late
  wait_until(done, 1);
  dispatcher.close(true);
  const LaneStagesSnapshot s = dispatcher.stages(lane);
  CHECK(count_of(s.queue_wait) == 1 && count_of(s.batch_wait) == 1);
  CHECK(count_of(s.execute) == 0 && count_of(s.batch_size) == 0);  // nothing ran
}

void reused_lane_starts_from_zero() {
  std::atomic<std::size_t> done{0};
  Dispatcher dispatcher(one_worker(), for_each_batch([&](const Batch& batch) { done += batch.size(); }));
  const std::size_t lane = dispatcher.add_lane();
  CHECK(dispatcher.try_push(lane, 1, Priority::kNormal) == PushStatus::kAccepted);
  wait_until(done, 1);
  dispatcher.retire(lane, true);
  CHECK(count_of(dispatcher.stages(lane).queue_wait) == 1);  // still readable once retired
  CHECK(dispatcher.add_lane() == lane);
  CHECK(count_of(dispatcher.stages(lane).queue_wait) == 0);
  bool refused = false;
  try {
    dispatcher.stages(lane + 1);
  } catch (const InvalidInput&) {
    refused = true;
  }
  CHECK(refused);
}

}  // namespace

int main() {
  RUN(buckets_are_inclusive_upper_bounds);
  RUN(bad_bounds_are_refused);
  RUN(many_threads_lose_nothing);
  RUN(dispatcher_records_each_request_and_batch);
  RUN(expired_requests_wait_but_do_not_run);
  RUN(reused_lane_starts_from_zero);
  return TEST_MAIN_RESULT();
}
