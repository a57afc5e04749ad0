// Caller runs (Dispatcher::run_as_caller): a thread waiting for its request
// serves the request's lane itself. Every payload still reaches the sink
// exactly once with callers and workers competing for one lane, through
// retire and close; a caller never serves a lane someone else owns, nor from
// inside a sink, nor a filling lane before a full batch is queued.
#include <atomic>
#include <chrono>
#include <mutex>
#include <numeric>
#include <thread>
#include <vector>

#include "check.hpp"
#include "dispatcher.hpp"

using namespace fastroute;

namespace {

// What the sink saw: how many times each payload came, and on which side.
struct Deliveries {
  explicit Deliveries(std::size_t payloads) : count(payloads), by_caller(payloads) {}

  void operator()(BatchStream& stream) {
    do {
      const Batch& batch = stream.batch();
      for (const auto* payloads : {&batch.ready, &batch.expired, &batch.aborted}) {
        for (Payload p : *payloads) {
          ++count[p];
          by_caller[p] = stream.by_caller();
        }
      }
      if (stream.by_caller()) ++caller_batches;
    } while (stream.next());
  }

  bool delivered(Payload p) const { return count[p].load() > 0; }
  bool each_once(std::size_t first, std::size_t end) const {
    for (std::size_t p = first; p < end; ++p) {
      if (count[p].load() != 1) return false;
    }
    return true;
  }

  std::vector<std::atomic<int>> count;
  std::vector<std::atomic<bool>> by_caller;
  std::atomic<int> caller_batches{0};
};

DispatchConfig config(std::size_t threads, std::size_t max_batch, std::int64_t max_delay_us) {
  DispatchConfig c;
  c.threads = threads;
  c.max_batch = max_batch;
  c.max_delay_us = max_delay_us;
  c.queue_capacity = 1024;
  c.spin_us = 5;
  return c;
}

std::uint64_t recorded(const HistogramSnapshot& histogram) {
  return std::accumulate(histogram.counts.begin(), histogram.counts.end(), std::uint64_t{0});
}

void wait_for(const std::atomic<bool>& flag) {
  while (!flag.load()) std::this_thread::sleep_for(std::chrono::microseconds(200));
}

// The only worker is held by a sink on lane 0, so lane 1's ring entry stays
// there: the caller takes lane 1 and runs its requests on its own thread, high
// priority first. Inside a sink (the caller's, the worker's) a caller run of
// another lane is refused.
void caller_runs_its_request_while_the_worker_is_busy() {
  Deliveries deliveries(8);
  std::atomic<bool> worker_inside{false}, release{false};
  std::atomic<int> nested_ran{0};
  std::atomic<Dispatcher*> self{nullptr};
  std::mutex order_mu;
  std::vector<Payload> caller_order;  // guarded by order_mu
  Dispatcher dispatcher(config(1, 4, 0), [&](BatchStream& stream) {
    const std::size_t lane = stream.batch().lane;
    if (lane == 0) {
      worker_inside = true;
      wait_for(release);
    }
    if (lane != 2 && self.load()->run_as_caller(2)) ++nested_ran;  // lane 2 holds a request meanwhile
    if (stream.by_caller()) {
      std::lock_guard lock(order_mu);
      caller_order = stream.batch().ready;
    }
    deliveries(stream);
  });
  self = &dispatcher;
  const std::size_t busy = dispatcher.add_lane(false), lane = dispatcher.add_lane(false), other = dispatcher.add_lane(false);
  CHECK(!dispatcher.run_as_caller(lane));  // nothing queued
  CHECK(dispatcher.try_push(busy, 0, Priority::kNormal) == PushStatus::kAccepted);
  wait_for(worker_inside);
  CHECK(dispatcher.try_push(lane, 1, Priority::kNormal) == PushStatus::kAccepted);
  CHECK(dispatcher.try_push(lane, 2, Priority::kHigh) == PushStatus::kAccepted);
  CHECK(dispatcher.try_push(other, 3, Priority::kNormal) == PushStatus::kAccepted);
  CHECK(dispatcher.run_as_caller(lane));
  CHECK(deliveries.delivered(1) && deliveries.by_caller[1].load());
  CHECK(deliveries.delivered(2) && deliveries.by_caller[2].load());
  {
    std::lock_guard lock(order_mu);
    CHECK((caller_order == std::vector<Payload>{2, 1}));
  }
  CHECK(!deliveries.delivered(3));  // refused inside the caller's sink
  CHECK(!dispatcher.on_worker_thread());  // only while inside the sink
  const LaneStats stats = dispatcher.stats(lane);
  CHECK(stats.in_flight == 0 && stats.queued == 0 && stats.service.completed == 2);
  CHECK(recorded(dispatcher.stages(lane).queue_wait) == 2);
  CHECK(recorded(dispatcher.stages(lane).execute) == 1);
  release = true;  // the worker's nested try of lane 2 is refused too; then it serves lane 2
  CHECK(dispatcher.close(true));
  CHECK(nested_ran.load() == 0);
  CHECK(deliveries.each_once(0, 4));
  CHECK(!deliveries.by_caller[3].load());
}

// caller_runs = 0, a filling lane short of a full batch, a closed dispatcher:
// refused, and the workers serve everything as before.
void refusals() {
  Deliveries deliveries(16);
  DispatchConfig off = config(1, 4, 0);
  off.caller_runs = 0;
  {
    Dispatcher dispatcher(off, std::ref(deliveries));
    const std::size_t lane = dispatcher.add_lane(false);
    CHECK(dispatcher.try_push(lane, 0, Priority::kNormal) == PushStatus::kAccepted);
    CHECK(!dispatcher.run_as_caller(lane));
    CHECK(dispatcher.close(true));
  }
  std::atomic<bool> worker_inside{false}, release{false};
  Dispatcher dispatcher(config(1, 4, 60'000'000), [&](BatchStream& stream) {
    if (!stream.by_caller() && stream.batch().lane == 0) {
      worker_inside = true;
      wait_for(release);
    }
    deliveries(stream);
  });
  const std::size_t busy = dispatcher.add_lane(false), filling = dispatcher.add_lane(true);
  CHECK(dispatcher.try_push(busy, 1, Priority::kNormal) == PushStatus::kAccepted);
  wait_for(worker_inside);
  for (Payload p = 2; p < 5; ++p) CHECK(dispatcher.try_push(filling, p, Priority::kNormal) == PushStatus::kAccepted);
  CHECK(!dispatcher.run_as_caller(filling));  // 3 of max_batch 4: the batch may still fill
  CHECK(dispatcher.try_push(filling, 5, Priority::kNormal) == PushStatus::kAccepted);
  CHECK(dispatcher.run_as_caller(filling));   // a full batch: nothing to wait for
  for (Payload p = 2; p < 6; ++p) CHECK(deliveries.by_caller[p].load());
  CHECK(dispatcher.try_push(filling, 6, Priority::kNormal) == PushStatus::kAccepted);
  release = true;
  CHECK(dispatcher.close(false));  // ends the filling wait; 6 aborted
  CHECK(!dispatcher.run_as_caller(filling));
  CHECK(deliveries.each_once(0, 7));
}

// A caller owns a lane (its sink blocks) while more requests arrive: a
// worker popping the lane's id skips it, the caller reschedules on release
// and a worker runs the rest. retire() and a draining close() wait for the
// caller's batch, and the workers stay until the caller has left.
void retire_and_close_wait_for_a_caller() {
  Deliveries deliveries(16);
  std::atomic<bool> caller_inside{false}, release{false}, release_workers{false}, retired{false}, closed{false};
  std::atomic<int> workers_inside{0};
  Dispatcher dispatcher(config(2, 1, 0), [&](BatchStream& stream) {
    if (stream.by_caller()) {
      caller_inside = true;
      wait_for(release);
    } else if (stream.batch().lane < 2) {  // the two lanes holding the workers
      ++workers_inside;
      wait_for(release_workers);
    }
    deliveries(stream);
  });
  const std::size_t first_busy = dispatcher.add_lane(false), second_busy = dispatcher.add_lane(false);
  const std::size_t lane = dispatcher.add_lane(false);
  CHECK(dispatcher.try_push(first_busy, 0, Priority::kNormal) == PushStatus::kAccepted);
  CHECK(dispatcher.try_push(second_busy, 1, Priority::kNormal) == PushStatus::kAccepted);
  while (workers_inside.load() < 2) std::this_thread::yield();
  CHECK(dispatcher.try_push(lane, 2, Priority::kNormal) == PushStatus::kAccepted);
  std::thread caller([&] { CHECK(dispatcher.run_as_caller(lane)); });
  wait_for(caller_inside);
  CHECK(dispatcher.try_push(lane, 3, Priority::kNormal) == PushStatus::kAccepted);
  CHECK(dispatcher.try_push(lane, 4, Priority::kNormal) == PushStatus::kAccepted);
  release_workers = true;  // they finish, pop the caller's lane, skip it
  std::thread retirer([&] {
    dispatcher.retire(lane, /*drain=*/true);
    retired = true;
  });
  std::thread closer([&] {
    CHECK(dispatcher.close(/*drain=*/true));
    closed = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // a probe, not a threshold
  CHECK(!retired.load() && !closed.load());
  CHECK(!deliveries.delivered(3));
  release = true;
  caller.join();
  retirer.join();
  closer.join();
  CHECK(deliveries.each_once(0, 5));
  CHECK(deliveries.by_caller[2].load());
  CHECK(!deliveries.by_caller[3].load() && !deliveries.by_caller[4].load());
  CHECK(deliveries.caller_batches.load() == 1);
}

// The race: 4 callers and 2 workers compete for one lane; each caller
// pushes, then serves the lane until its own payload came through (as
// ResultHandle.result() does). Midway the lane is retired (drain): pushes
// are refused from then on, and every accepted payload went to the sink
// exactly once.
void callers_and_workers_race_for_one_lane() {
  constexpr std::size_t kCallers = 4, kPerCaller = 4000;
  Deliveries deliveries(kCallers * kPerCaller);
  std::atomic<std::size_t> accepted{0}, pushed_total{0};
  std::vector<std::atomic<bool>> was_accepted(kCallers * kPerCaller);
  {
    Dispatcher dispatcher(config(2, 8, 0), std::ref(deliveries));
    const std::size_t lane = dispatcher.add_lane(false);
    std::vector<std::thread> callers;
    for (std::size_t c = 0; c < kCallers; ++c) {
      callers.emplace_back([&, c] {
        for (std::size_t i = 0; i < kPerCaller; ++i) {
          const Payload p = c * kPerCaller + i;
          const PushStatus status = dispatcher.try_push(lane, p, i % 3 == 0 ? Priority::kHigh : Priority::kNormal);
          ++pushed_total;
          if (status == PushStatus::kClosed) break;
          if (status != PushStatus::kAccepted) continue;
          was_accepted[p] = true;
          ++accepted;
          while (!deliveries.delivered(p)) {
            if (!dispatcher.run_as_caller(lane)) std::this_thread::yield();
          }
        }
      });
    }
    while (pushed_total.load() < kCallers * kPerCaller / 2) std::this_thread::yield();
    dispatcher.retire(lane, /*drain=*/true);
    for (auto& t : callers) t.join();
    CHECK(dispatcher.close(true));
  }
  std::size_t delivered = 0;
  for (std::size_t p = 0; p < kCallers * kPerCaller; ++p) {
    CHECK(deliveries.count[p].load() == (was_accepted[p].load() ? 1 : 0));
    delivered += static_cast<std::size_t>(deliveries.count[p].load());
  }
  CHECK(delivered == accepted.load());
}

}  // namespace

int main() {
  RUN(caller_runs_its_request_while_the_worker_is_busy);
  RUN(refusals);
  RUN(retire_and_close_wait_for_a_caller);
  RUN(callers_and_workers_race_for_one_lane);
  return TEST_MAIN_RESULT();
}
