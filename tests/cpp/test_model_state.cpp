// Live model state: service statistics kept by the dispatcher, the circuit
// breaker's transitions (on a test clock), the retry budget's bound, and the
// load-aware choice, and the lease count. Many-thread tests run under TSan.
#include <atomic>
#include <chrono>
#include <limits>
#include <thread>
#include <vector>

#include "check.hpp"
#include "dispatcher.hpp"
#include "errors.hpp"
#include "model_state.hpp"

using namespace fastroute;

namespace {

constexpr std::int64_t kMs = 1'000'000;

void service_stats_average_and_count() {
  ServiceStats stats;
  CHECK(stats.snapshot().completed == 0 && stats.request_ns() == 0);
  stats.record_batch(1000, 4, 1, 10);  // first sample is taken as is
  ServiceSnapshot s = stats.snapshot();
  CHECK(s.batch_ns == 1000 && s.request_ns == 250 && s.error_rate == 0.25);
  CHECK(s.completed == 4 && s.failed == 1);
  stats.record_batch(2000, 1, 0, 20);
  s = stats.snapshot();
  CHECK(s.batch_ns == 1000 + kEwmaWeight * 1000);
  CHECK(s.request_ns == 250 + kEwmaWeight * (2000 - 250));
  CHECK(s.error_rate == 0.25 - kEwmaWeight * 0.25);
  stats.record_batch(-5, 3, 9, 30);  // a clock going backwards and over-reported failures are clamped
  s = stats.snapshot();
  CHECK(s.failed == 4 && s.completed == 8 && s.batch_ns >= 0 && s.error_rate <= 1);
  stats.record_batch(100, 0, 0, 40);  // an empty batch is no sample
  CHECK(stats.snapshot().completed == 8);
  CHECK(stats.snapshot().last_ns == 30);  // the empty batch recorded nothing
  CHECK(stats.fresh_request_ns(30 + kServiceStaleNs) == stats.request_ns());
  CHECK(stats.fresh_request_ns(31 + kServiceStaleNs) == 0);  // stale: unknown again
  stats.reset();
  CHECK(stats.snapshot().completed == 0 && stats.request_ns() == 0);
}

BreakerConfig breaker_config() {
  BreakerConfig c;
  c.failure_rate = 0.5;
  c.min_calls = 4;
  c.window_ns = 1000 * kMs;
  c.cooldown_ns = 100 * kMs;
  c.probes = 2;
  return c;
}

void breaker_opens_probes_and_closes() {
  CircuitBreaker breaker(breaker_config());
  std::int64_t now = 5000 * kMs;
  CHECK(breaker.admit(now) == Admission::kAllowed);
  breaker.record(false, false, now);
  breaker.record(false, false, now);
  breaker.record(true, false, now);
  CHECK(breaker.state() == BreakerState::kClosed);  // 3 calls < min_calls
  breaker.record(false, false, now);                // 3 of 4 failed
  CHECK(breaker.state() == BreakerState::kOpen);
  CHECK(!breaker.would_admit(now + 50 * kMs) && breaker.would_admit(now + 100 * kMs));
  CHECK(breaker.admit(now + 50 * kMs) == Admission::kRejected);
  CHECK(breaker.snapshot().rejected == 1 && breaker.snapshot().opened == 1);
  now += 100 * kMs;  // cooldown over: two probes, no third
  CHECK(breaker.admit(now) == Admission::kProbe);
  CHECK(breaker.state() == BreakerState::kHalfOpen);
  CHECK(breaker.admit(now) == Admission::kProbe);
  CHECK(!breaker.would_admit(now));
  CHECK(breaker.admit(now) == Admission::kRejected);
  breaker.record(false, false, now);  // a request admitted before it opened: ignored
  CHECK(breaker.state() == BreakerState::kHalfOpen);
  breaker.record(false, true, now);  // a failed probe opens it again
  CHECK(breaker.state() == BreakerState::kOpen && breaker.snapshot().opened == 2);
  now += 100 * kMs;
  CHECK(breaker.admit(now) == Admission::kProbe);
  CHECK(breaker.admit(now) == Admission::kProbe);
  breaker.record(true, true, now);
  CHECK(breaker.state() == BreakerState::kHalfOpen);
  breaker.record(true, true, now);
  CHECK(breaker.state() == BreakerState::kClosed);
  const BreakerSnapshot s = breaker.snapshot();
  CHECK(s.closed == 1 && s.last_change_ns == now && s.window_calls == 0);
}

void breaker_window_forgets_old_failures() {
  CircuitBreaker breaker(breaker_config());
  std::int64_t now = 1000 * kMs;
  for (int i = 0; i < 3; ++i) breaker.record(false, false, now);
  now += 2000 * kMs;  // the failures left the window
  for (int i = 0; i < 3; ++i) breaker.record(true, false, now);
  breaker.record(false, false, now);
  CHECK(breaker.state() == BreakerState::kClosed);  // 1 of 4 in the window
}

void breaker_cancelled_probe_frees_its_slot() {
  CircuitBreaker breaker(breaker_config());
  for (int i = 0; i < 4; ++i) breaker.record(false, false, 0);
  CHECK(breaker.admit(100 * kMs) == Admission::kProbe);
  CHECK(breaker.admit(100 * kMs) == Admission::kProbe);
  breaker.cancel_probe();
  CHECK(breaker.admit(100 * kMs) == Admission::kProbe);
  breaker.cancel_probe();
  breaker.cancel_probe();
  breaker.cancel_probe();  // more cancels than probes: the count stays at zero
  CHECK(breaker.admit(100 * kMs) == Admission::kProbe);
  CHECK(breaker.admit(100 * kMs) == Admission::kProbe);
  CHECK(breaker.admit(100 * kMs) == Admission::kRejected);
}

template <typename Make>
bool throws_invalid_input(Make make) {
  try {
    make();
  } catch (const InvalidInput&) {
    return true;
  }
  return false;
}

void breaker_rejects_bad_config() {
  for (double rate : {0.0, -1.0, 1.5, std::numeric_limits<double>::quiet_NaN()}) {
    BreakerConfig c = breaker_config();
    c.failure_rate = rate;
    CHECK(throws_invalid_input([&] { CircuitBreaker breaker(c); }));
  }
  BreakerConfig c = breaker_config();
  c.cooldown_ns = 0;
  CHECK(throws_invalid_input([&] { CircuitBreaker breaker(c); }));
}

// Many threads admit and record at once: probes never exceed the limit, and
// the state ends consistent (TSan checks the accesses).
void breaker_many_threads() {
  BreakerConfig c = breaker_config();
  c.cooldown_ns = 1;
  CircuitBreaker breaker(c);
  std::atomic<std::int64_t> clock{0};
  std::atomic<int> probes_in_flight{0}, most_probes{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 5000; ++i) {
        const std::int64_t now = clock.fetch_add(1000);
        const Admission a = breaker.admit(now);
        if (a == Admission::kRejected) continue;
        const bool probe = a == Admission::kProbe;
        if (probe) {
          const int in = ++probes_in_flight;
          int seen = most_probes.load();
          while (in > seen && !most_probes.compare_exchange_weak(seen, in)) {
          }
        }
        const bool ok = (i + t) % 3 != 0;
        if (probe) --probes_in_flight;
        breaker.record(ok, probe, now);
        (void)breaker.snapshot();
      }
    });
  }
  for (auto& thread : threads) thread.join();
  CHECK(most_probes.load() <= static_cast<int>(c.probes));
  const BreakerSnapshot s = breaker.snapshot();
  CHECK(s.opened >= s.closed);
}

void retry_budget_bounds_extra_load() {
  RetryBudget budget(0.1, 2);
  CHECK(!budget.try_spend());  // nothing saved yet
  for (int i = 0; i < 1000; ++i) budget.on_request();
  CHECK(budget.balance() == 2);  // capped at the burst
  CHECK(budget.try_spend() && budget.try_spend() && !budget.try_spend());
  for (int i = 0; i < 10; ++i) budget.on_request();
  CHECK(budget.try_spend() && !budget.try_spend());
  CHECK(throws_invalid_input([] { RetryBudget bad(1.5, 1); }));
}

// Four threads issue 40,000 requests and retry every one they can: at most
// 10% of them (plus the burst) are retried, and the balance never goes negative.
void retry_budget_many_threads() {
  RetryBudget budget(0.1, 5);
  std::atomic<int> retries{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        budget.on_request();
        if (budget.try_spend()) ++retries;
        CHECK(budget.balance() >= 0);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  CHECK(retries.load() <= 4000 + 5);
  CHECK(retries.load() >= 3990);  // the budget is spent, not lost
}

std::vector<CandidateLoad> three_models(double best_ns, double mid_ns, double fast_ns) {
  return {{0.9, 3, best_ns, true}, {0.8, 2, mid_ns, true}, {0.7, 1, fast_ns, true}};
}

void choice_without_load_is_the_preferred() {
  const LoadWeights weights{1000, 0.1};
  // Idle: each model's expected time is its service time; the preferred (index 2, cheap and
  // low quality, chosen by the wrapped policy) stands although model 0 has higher quality.
  auto idle = three_models(2 * kMs, 0.5 * kMs, 0.1 * kMs);
  for (std::size_t preferred = 0; preferred < 3; ++preferred) {
    const LoadChoice c = choose_under_load(idle, preferred, idle[preferred].expected_ns, weights, kNoDeadline,
                                           LatePolicy::kRefuse, 42);
    CHECK(c.index == static_cast<int>(preferred) && c.reason == ChoiceReason::kPreferred);
  }
}

void choice_spills_under_load_and_respects_deadlines() {
  const LoadWeights weights{1000, 0};  // 1 quality point per second of extra wait
  auto loaded = three_models(50 * kMs, 0.5 * kMs, 0.1 * kMs);
  LoadChoice c = choose_under_load(loaded, 0, 2 * kMs, weights, kNoDeadline, LatePolicy::kRefuse, 1);
  CHECK(c.index == 1 && c.reason == ChoiceReason::kSpilled);  // 0.9 - 0.048 < 0.8
  c = choose_under_load(loaded, 0, 2 * kMs, LoadWeights{1, 0}, kNoDeadline, LatePolicy::kRefuse, 1);
  CHECK(c.index == 0 && c.reason == ChoiceReason::kPreferred);  // a patient class waits
  c = choose_under_load(loaded, 0, 2 * kMs, LoadWeights{1, 0}, 5 * kMs, LatePolicy::kRefuse, 1);
  CHECK(c.index == 1 && c.reason == ChoiceReason::kPreferredLate);  // ... but not past its deadline
  c = choose_under_load(loaded, 0, 2 * kMs, weights, 50'000, LatePolicy::kRefuse, 1);
  CHECK(c.index == -1 && c.reason == ChoiceReason::kRefusedLate);
  c = choose_under_load(loaded, 0, 2 * kMs, weights, 50'000, LatePolicy::kFastest, 1);
  CHECK(c.index == 2 && c.reason == ChoiceReason::kFastestLate);
  loaded[0].available = false;
  c = choose_under_load(loaded, 0, 2 * kMs, LoadWeights{1, 0}, kNoDeadline, LatePolicy::kRefuse, 1);
  CHECK(c.index == 1 && c.reason == ChoiceReason::kUnavailable);
  for (auto& candidate : loaded) candidate.available = false;
  c = choose_under_load(loaded, 0, 2 * kMs, weights, kNoDeadline, LatePolicy::kFastest, 1);
  CHECK(c.index == -1 && c.reason == ChoiceReason::kNoneAvailable);
}

void choice_cost_weight_and_random_ties() {
  // Equal quality and time: the cost weight keeps traffic off the dearer model.
  std::vector<CandidateLoad> same = {{0.5, 1, 10 * kMs, true}, {0.5, 9, 0, true}, {0.5, 1, 0, true}};
  LoadChoice c = choose_under_load(same, 0, 0, LoadWeights{1000, 0.1}, kNoDeadline, LatePolicy::kRefuse, 7);
  CHECK(c.index == 2);
  // Two equal alternatives beat the loaded preferred: the seed decides, both get picked.
  std::vector<CandidateLoad> tied = {{0.5, 0, 10 * kMs, true}, {0.5, 0, 0, true}, {0.5, 0, 0, true}};
  int picked[3] = {0, 0, 0};
  for (std::uint64_t seed = 0; seed < 200; ++seed) {
    c = choose_under_load(tied, 0, 0, LoadWeights{1000, 0}, kNoDeadline, LatePolicy::kRefuse, seed);
    ++picked[c.index];
  }
  CHECK(picked[0] == 0 && picked[1] > 50 && picked[2] > 50);
  const LoadChoice again = choose_under_load(tied, 0, 0, LoadWeights{1000, 0}, kNoDeadline, LatePolicy::kRefuse, 5);
  CHECK(again.index == choose_under_load(tied, 0, 0, LoadWeights{1000, 0}, kNoDeadline, LatePolicy::kRefuse, 5).index);
  CHECK(throws_invalid_input([&] { choose_under_load(tied, 3, 0, LoadWeights{}, kNoDeadline, LatePolicy::kRefuse, 0); }));
}

// The dispatcher keeps each lane's service record: the sink's failures are
// counted, per-request time is measured, and the expected completion grows
// with the queue (only the high queue counts for a high-priority request).
void dispatcher_keeps_live_state() {
  DispatchConfig config;
  config.threads = 1;
  config.max_batch = 4;
  config.max_delay_us = 0;
  std::atomic<bool> release{false};
  std::atomic<bool> holding{false};  // the worker holds a whole batch in the sink, waiting for release
  std::atomic<int> batches{0};
  Dispatcher dispatcher(config, [&](BatchStream& stream) {
    do {
      holding = true;
      while (!release.load()) std::this_thread::yield();
      std::this_thread::sleep_for(std::chrono::microseconds(200));
      std::size_t even = 0;  // the even payloads "fail", however the requests were batched
      for (Payload p : stream.batch().ready) even += (p % 2 == 0);
      stream.report_failures(even);
      ++batches;
    } while (stream.next());
  });
  const std::size_t lane = dispatcher.add_lane();
  CHECK(dispatcher.expected_ns(lane, Priority::kNormal) == 0);  // no sample yet
  for (Payload p = 0; p < 4; ++p) CHECK(dispatcher.try_push(lane, p, Priority::kNormal) == PushStatus::kAccepted);
  release = true;
  while (dispatcher.stats(lane).service.completed < 4) std::this_thread::yield();
  LaneStats s = dispatcher.stats(lane);
  CHECK(s.service.failed == 2 && s.service.error_rate > 0 && s.service.error_rate < 1);
  CHECK(s.service.request_ns > 0 && s.service.batch_ns >= s.service.request_ns);
  release = false;
  holding = false;
  for (Payload p = 0; p < 9; ++p) CHECK(dispatcher.try_push(lane, p, Priority::kNormal) == PushStatus::kAccepted);
  // Waiting for the sink, not for in_flight > 0: a worker still collecting its batch
  // (slow under ASan) could take the high-priority request pushed next into it.
  while (!holding.load()) std::this_thread::yield();
  CHECK(dispatcher.try_push(lane, 9, Priority::kHigh) == PushStatus::kAccepted);
  s = dispatcher.stats(lane);
  const double per_request = s.service.request_ns;
  CHECK(s.queued_high == 1 && s.in_flight >= 1 && s.queued == 10 - static_cast<std::size_t>(s.in_flight));
  CHECK(dispatcher.expected_ns(lane, Priority::kNormal) == static_cast<double>(s.queued + s.in_flight + 1) * per_request);
  CHECK(dispatcher.expected_ns(lane, Priority::kHigh) == static_cast<double>(1 + s.in_flight + 1) * per_request);
  release = true;
  CHECK(dispatcher.close(true));
  s = dispatcher.stats(lane);
  CHECK(s.service.completed == 14 && s.queued == 0 && s.in_flight == 0);
  CHECK(throws_invalid_input([&] { dispatcher.expected_ns(99, Priority::kHigh); }));
}

}  // namespace

void hold_count_reports_the_last_drop_of_a_retiring_version() {
  HoldCount holds;
  CHECK(holds.drop() == DropOutcome::kNotHeld && holds.count() == 0);
  holds.hold();
  holds.hold();
  CHECK(holds.drop() == DropOutcome::kHeld && holds.drop() == DropOutcome::kHeld);  // not retiring
  holds.hold();
  holds.hold();
  holds.mark_retiring();
  CHECK(holds.retiring() && holds.drop() == DropOutcome::kHeld && holds.count() == 1);
  CHECK(holds.drop() == DropOutcome::kDrained && holds.count() == 0);
  CHECK(holds.drop() == DropOutcome::kNotHeld && holds.count() == 0);
}

// Many threads hold and drop while another marks the version retiring: exactly
// one drop (the last) reports kDrained, and the count ends at zero.
void hold_count_many_threads() {
  HoldCount holds;
  holds.hold();  // the retirement's own hold, dropped last by the main thread
  std::atomic<int> drained{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 20000; ++i) {
        holds.hold();
        if (holds.drop() == DropOutcome::kDrained) ++drained;
      }
    });
  }
  holds.mark_retiring();
  for (auto& thread : threads) thread.join();
  CHECK(drained == 0);  // the main thread's hold was never dropped meanwhile
  CHECK(holds.drop() == DropOutcome::kDrained && holds.count() == 0);
}

int main() {
  RUN(service_stats_average_and_count);
  RUN(breaker_opens_probes_and_closes);
  RUN(breaker_window_forgets_old_failures);
  RUN(breaker_cancelled_probe_frees_its_slot);
  RUN(breaker_rejects_bad_config);
  RUN(breaker_many_threads);
  RUN(retry_budget_bounds_extra_load);
  RUN(retry_budget_many_threads);
  RUN(choice_without_load_is_the_preferred);
  RUN(choice_spills_under_load_and_respects_deadlines);
  RUN(choice_cost_weight_and_random_ties);
  RUN(dispatcher_keeps_live_state);
  RUN(hold_count_reports_the_last_drop_of_a_retiring_version);
  RUN(hold_count_many_threads);
  return TEST_MAIN_RESULT();
}
