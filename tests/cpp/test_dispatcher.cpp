// Dispatcher and batcher: every payload reaches the sink exactly once, with
// batching limits, priorities, deadlines, FIFO per lane, close and retire.
#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

#include "check.hpp"
#include "dispatcher.hpp"
#include "errors.hpp"

using namespace fastroute;

namespace {

enum Outcome : int { kNone = 0, kReady = 1, kExpired = 2, kAborted = 3 };

// Records what the sink saw: each payload's outcome (and how many times it
// came), the largest batch, and per-lane order of ready payloads.
struct Recorder {
  explicit Recorder(std::size_t payloads) : outcome(payloads), deliveries(payloads) {}

  void operator()(const Batch& batch) {
    largest_ready = std::max(largest_ready.load(), batch.ready.size());
    auto record = [&](const std::vector<Payload>& payloads, Outcome what) {
      for (Payload p : payloads) {
        outcome[p].store(what);
        ++deliveries[p];
      }
    };
    record(batch.ready, kReady);
    record(batch.expired, kExpired);
    record(batch.aborted, kAborted);
    std::lock_guard lock(mu);
    if (order.size() <= batch.lane) order.resize(batch.lane + 1);
    order[batch.lane].insert(order[batch.lane].end(), batch.ready.begin(), batch.ready.end());
  }

  std::size_t count(Outcome what) const {
    std::size_t n = 0;
    for (const auto& o : outcome) n += (o.load() == what);
    return n;
  }
  bool each_delivered_once() const {
    for (const auto& d : deliveries) {
      if (d.load() != 1) return false;
    }
    return true;
  }

  std::vector<std::atomic<int>> outcome;
  std::vector<std::atomic<int>> deliveries;
  std::atomic<std::size_t> largest_ready{0};
  std::mutex mu;
  std::vector<std::vector<Payload>> order;  // guarded by mu
};

DispatchConfig config(std::size_t threads, std::size_t max_batch, std::int64_t max_delay_us,
                      std::size_t capacity = 1024) {
  DispatchConfig c;
  c.threads = threads;
  c.max_batch = max_batch;
  c.max_delay_us = max_delay_us;
  c.queue_capacity = capacity;
  c.spin_us = 5;
  return c;
}

void push_until_accepted(Dispatcher& d, std::size_t lane, Payload p, Priority priority = Priority::kNormal) {
  while (d.try_push(lane, p, priority) == PushStatus::kFull) std::this_thread::yield();
}

// 8 producers over 3 lanes; every payload delivered once, batches bounded,
// each producer's payloads FIFO within its lane.
void every_payload_exactly_once() {
  constexpr std::size_t kProducers = 8, kPerProducer = 5000, kLanes = 3, kMaxBatch = 16;
  Recorder recorder(kProducers * kPerProducer);
  {
    Dispatcher dispatcher(config(3, kMaxBatch, 50, 256), for_each_batch(std::ref(recorder)));
    for (std::size_t i = 0; i < kLanes; ++i) CHECK(dispatcher.add_lane() == i);
    std::vector<std::thread> producers;
    for (std::size_t p = 0; p < kProducers; ++p) {
      producers.emplace_back([&, p] {
        for (std::size_t i = 0; i < kPerProducer; ++i) {
          push_until_accepted(dispatcher, p % kLanes, p * kPerProducer + i);
        }
      });
    }
    for (auto& t : producers) t.join();
    CHECK(dispatcher.close(/*drain=*/true));
  }
  CHECK(recorder.each_delivered_once());
  CHECK(recorder.count(kReady) == kProducers * kPerProducer);
  CHECK(recorder.largest_ready.load() <= kMaxBatch);
  for (const auto& lane : recorder.order) {  // payload ids of one producer increase
    std::vector<std::int64_t> last(kProducers, -1);
    for (Payload p : lane) {
      const std::size_t producer = p / kPerProducer;
      CHECK(static_cast<std::int64_t>(p) > last[producer]);
      last[producer] = static_cast<std::int64_t>(p);
    }
  }
}

// A sink blocked on lane 0 holds one worker; lane 1 is still served.
void blocked_lane_does_not_stall_others() {
  std::atomic<bool> release{false};
  std::atomic<int> served_on_lane1{0};
  Dispatcher dispatcher(config(2, 4, 0), for_each_batch([&](const Batch& batch) {
    if (batch.lane == 0) {
      while (!release.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    } else {
      served_on_lane1 += static_cast<int>(batch.ready.size());
    }
  }));
  dispatcher.add_lane();
  dispatcher.add_lane();
  push_until_accepted(dispatcher, 0, 1);
  for (Payload p = 0; p < 100; ++p) push_until_accepted(dispatcher, 1, p);
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (served_on_lane1.load() < 100 && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  CHECK(served_on_lane1.load() == 100);
  release = true;
  CHECK(dispatcher.close(true));
}

// A lane that does not fill batches (a model called per request) hands a
// lone request to the sink at once; one that does waits up to max_delay
// (here a minute: the sink would not see it within the test).
void lane_without_batch_filling_does_not_wait() {
  std::atomic<int> delivered_unfilled{0};
  std::atomic<int> delivered_filled{0};
  Dispatcher dispatcher(config(2, 64, 60'000'000), for_each_batch([&](const Batch& batch) {
    (batch.lane == 0 ? delivered_unfilled : delivered_filled) += static_cast<int>(batch.size());
  }));
  CHECK(dispatcher.add_lane(false) == 0);
  CHECK(dispatcher.add_lane(true) == 1);
  push_until_accepted(dispatcher, 1, 1);
  push_until_accepted(dispatcher, 0, 2);
  while (delivered_unfilled.load() == 0) std::this_thread::sleep_for(std::chrono::microseconds(100));
  CHECK(delivered_filled.load() == 0);  // still waiting for its batch to fill
  CHECK(dispatcher.close(false));       // ends the wait: the batch goes to the sink
  CHECK(delivered_filled.load() == 1);
}

// While the only worker is busy, normal then high requests queue up; the next
// batch takes the high ones first. Expired and aborted requests are not run.
void priorities_deadlines_and_abort() {
  Recorder recorder(64);
  std::atomic<bool> release{false};
  std::mutex first_mu;
  std::vector<Payload> second_batch;  // guarded by first_mu
  std::atomic<int> batches{0};
  Dispatcher dispatcher(config(1, 64, 0), for_each_batch([&](const Batch& batch) {
    if (batches++ == 0) {
      while (!release.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    } else if (second_batch.empty()) {
      std::lock_guard lock(first_mu);
      second_batch = batch.ready;
    }
    recorder(batch);
  }));
  dispatcher.add_lane();
  push_until_accepted(dispatcher, 0, 0);  // occupies the worker
  while (dispatcher.stats(0).in_flight == 0) std::this_thread::yield();
  for (Payload p = 1; p <= 4; ++p) push_until_accepted(dispatcher, 0, p, Priority::kNormal);
  for (Payload p = 5; p <= 8; ++p) push_until_accepted(dispatcher, 0, p, Priority::kHigh);
  CHECK(dispatcher.try_push(0, 9, Priority::kNormal, now_ns() - 1) == PushStatus::kAccepted);  // already late
  CHECK(dispatcher.stats(0).queued == 9);
  release = true;
  CHECK(dispatcher.close(true));
  {
    std::lock_guard lock(first_mu);
    const std::vector<Payload> expected{5, 6, 7, 8, 1, 2, 3, 4};
    CHECK(second_batch == expected);
  }
  CHECK(recorder.outcome[9].load() == kExpired);
  CHECK(dispatcher.try_push(0, 10, Priority::kNormal) == PushStatus::kClosed);
  bool threw = false;
  try {
    dispatcher.add_lane();
  } catch (const Closed&) {
    threw = true;
  }
  CHECK(threw);
}

void close_without_drain_aborts_queued() {
  Recorder recorder(200);
  std::atomic<bool> release{false};
  std::atomic<int> batches{0};
  Dispatcher dispatcher(config(1, 8, 0), for_each_batch([&](const Batch& batch) {
    if (batches++ == 0) {
      while (!release.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    recorder(batch);
  }));
  dispatcher.add_lane();
  push_until_accepted(dispatcher, 0, 0);
  while (dispatcher.stats(0).in_flight == 0) std::this_thread::yield();
  for (Payload p = 1; p < 200; ++p) push_until_accepted(dispatcher, 0, p);
  std::thread closer([&] { CHECK(dispatcher.close(false)); });
  // Closed is set after aborting: from here nothing queued may run.
  while (!dispatcher.closed()) std::this_thread::yield();
  release = true;
  closer.join();
  CHECK(recorder.each_delivered_once());
  CHECK(recorder.outcome[0].load() == kReady);
  CHECK(recorder.count(kAborted) == 199);
}

// A sink closing its own dispatcher (a model or a done-callback closing the
// router) cannot wait for itself: close() returns false at once instead of
// deadlocking, the queue still drains, and a later close() waits and joins.
void close_from_inside_the_sink() {
  Recorder recorder(50);
  std::atomic<Dispatcher*> self{nullptr};
  std::atomic<int> inner_close{-1};
  std::atomic<bool> inside_is_worker{false};
  std::atomic<bool> go{false};
  Dispatcher dispatcher(config(2, 1, 0), for_each_batch([&](const Batch& batch) {
    while (!go.load()) std::this_thread::yield();
    if (!batch.ready.empty() && batch.ready[0] == 0) {
      inside_is_worker = self.load()->on_worker_thread();
      inner_close = self.load()->close(/*drain=*/true) ? 1 : 0;
    }
    recorder(batch);
  }));
  self = &dispatcher;
  CHECK(!dispatcher.on_worker_thread());
  dispatcher.add_lane();
  for (Payload p = 0; p < 50; ++p) push_until_accepted(dispatcher, 0, p);
  go = true;
  while (inner_close.load() < 0) std::this_thread::yield();
  CHECK(inner_close.load() == 0);
  CHECK(inside_is_worker.load());
  CHECK(dispatcher.close(true));  // waits for the detached workers to drain the lane
  CHECK(recorder.each_delivered_once());
  CHECK(recorder.count(kReady) == 50);
  CHECK(dispatcher.try_push(0, 0, Priority::kNormal) == PushStatus::kClosed);
}

// close() wakes a producer waiting for room (it is refused at once), and a
// timed-out draining close() leaves the rest to a later close without drain.
void close_wakes_push_wait_and_a_later_close_aborts_the_rest() {
  Recorder recorder(8);
  std::atomic<bool> release{false};
  Dispatcher dispatcher(config(1, 1, 0, 2), for_each_batch([&](const Batch& batch) {
    while (!release.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    recorder(batch);
  }));
  dispatcher.add_lane();
  push_until_accepted(dispatcher, 0, 0);
  while (dispatcher.stats(0).in_flight == 0) std::this_thread::yield();
  push_until_accepted(dispatcher, 0, 1);
  push_until_accepted(dispatcher, 0, 2);
  std::atomic<int> waited{-1};
  std::thread producer([&] {
    waited = static_cast<int>(dispatcher.push_wait(0, 3, Priority::kNormal, kNoDeadline, 100'000'000'000));
  });
  while (dispatcher.stats(0).queued < 2) std::this_thread::yield();
  CHECK(!dispatcher.close(/*drain=*/true, /*timeout_ns=*/1'000'000));  // the sink holds the worker
  producer.join();  // woken by close, long before its 100 s
  CHECK(waited.load() == static_cast<int>(PushStatus::kClosed));
  CHECK(!release.load());
  dispatcher.begin_close(/*drain=*/false);  // aborts what the draining close left queued
  release = true;
  CHECK(dispatcher.close(false));
  CHECK(recorder.outcome[0].load() == kReady);
  CHECK(recorder.outcome[1].load() == kAborted && recorder.outcome[2].load() == kAborted);
  CHECK(recorder.deliveries[3].load() == 0);  // refused, never accepted
}

void full_queue_and_push_wait() {
  std::atomic<bool> release{false};
  Dispatcher dispatcher(config(1, 1, 0, 2), for_each_batch([&](const Batch&) {
    while (!release.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }));
  dispatcher.add_lane();
  push_until_accepted(dispatcher, 0, 0);
  while (dispatcher.stats(0).in_flight == 0) std::this_thread::yield();
  CHECK(dispatcher.try_push(0, 1, Priority::kNormal) == PushStatus::kAccepted);
  CHECK(dispatcher.try_push(0, 2, Priority::kNormal) == PushStatus::kAccepted);
  CHECK(dispatcher.try_push(0, 3, Priority::kNormal) == PushStatus::kFull);
  CHECK(dispatcher.try_push(0, 3, Priority::kHigh) == PushStatus::kAccepted);  // its own ring
  CHECK(dispatcher.push_wait(0, 4, Priority::kNormal, kNoDeadline, 2'000'000) == PushStatus::kFull);
  std::thread releaser([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    release = true;
  });
  CHECK(dispatcher.push_wait(0, 4, Priority::kNormal, kNoDeadline, 10'000'000'000) == PushStatus::kAccepted);
  releaser.join();
  CHECK(dispatcher.close(true));
}

void retire_drains_one_lane() {
  std::atomic<int> ran{0};
  Dispatcher dispatcher(config(2, 4, 100), for_each_batch([&](const Batch& batch) {
    std::this_thread::sleep_for(std::chrono::microseconds(200));
    ran += static_cast<int>(batch.ready.size());
  }));
  const std::size_t lane = dispatcher.add_lane();
  for (Payload p = 0; p < 100; ++p) push_until_accepted(dispatcher, lane, p);
  dispatcher.retire(lane, /*drain=*/true);
  CHECK(ran.load() == 100);
  const LaneStats stats = dispatcher.stats(lane);
  CHECK(stats.queued == 0 && stats.in_flight == 0 && stats.closed);
  CHECK(dispatcher.try_push(lane, 1, Priority::kNormal) == PushStatus::kClosed);
  CHECK(dispatcher.close(true));
}

// A retired lane's id is reused by add_lane, reopened (neither closed nor
// aborting); only lanes in use count against max_lanes.
void retired_lanes_are_reused() {
  std::atomic<int> ran{0}, aborted{0};
  DispatchConfig c = config(1, 4, 0);
  c.max_lanes = 2;
  Dispatcher dispatcher(c, for_each_batch([&](const Batch& batch) {
    ran += static_cast<int>(batch.ready.size());
    aborted += static_cast<int>(batch.aborted.size());
  }));
  const std::size_t kept = dispatcher.add_lane();
  for (int round = 0; round < 100; ++round) {
    const std::size_t lane = dispatcher.add_lane();
    CHECK(lane == 1);
    CHECK(!dispatcher.stats(lane).closed);
    const bool drain = round % 2 == 0;
    const int ran_before = ran.load();
    push_until_accepted(dispatcher, lane, 1);
    dispatcher.retire(lane, drain);
    if (drain) CHECK(ran.load() == ran_before + 1);  // not aborted by the previous round's retire
    CHECK(dispatcher.try_push(lane, 2, Priority::kNormal) == PushStatus::kClosed);
  }
  bool threw = false;
  dispatcher.add_lane();
  try {
    dispatcher.add_lane();
  } catch (const Exhausted&) {
    threw = true;
  }
  CHECK(threw);
  dispatcher.retire(kept, /*drain=*/true);
  dispatcher.retire(kept, /*drain=*/true);  // twice: freed once
  CHECK(dispatcher.add_lane() == kept);
  threw = false;
  try {
    dispatcher.add_lane();
  } catch (const Exhausted&) {
    threw = true;
  }
  CHECK(threw);
  CHECK(dispatcher.close(true));
  CHECK(ran.load() + aborted.load() == 100);
}

void bad_config_and_lane() {
  bool threw = false;
  try {
    Dispatcher bad(config(0, 1, 0), for_each_batch([](const Batch&) {}));
  } catch (const InvalidInput&) {
    threw = true;
  }
  CHECK(threw);
  Dispatcher dispatcher(config(1, 1, 0), for_each_batch([](const Batch&) {}));
  threw = false;
  try {
    dispatcher.stats(3);
  } catch (const InvalidInput&) {
    threw = true;
  }
  CHECK(threw);
}

}  // namespace

int main() {
  RUN(every_payload_exactly_once);
  RUN(blocked_lane_does_not_stall_others);
  RUN(lane_without_batch_filling_does_not_wait);
  RUN(priorities_deadlines_and_abort);
  RUN(close_without_drain_aborts_queued);
  RUN(close_from_inside_the_sink);
  RUN(close_wakes_push_wait_and_a_later_close_aborts_the_rest);
  RUN(full_queue_and_push_wait);
  RUN(retire_drains_one_lane);
  RUN(retired_lanes_are_reused);
  RUN(bad_config_and_lane);
  return TEST_MAIN_RESULT();
}
