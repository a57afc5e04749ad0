// Live model state for decisions under load: each replica's service times
// and error rate (ServiceStats, kept by the dispatcher in every lane), each
// model version's circuit breaker, a retry budget, the load-aware choice
// among candidate models (choose_under_load), and how many requests hold each
// model version (HoldCount, the lease count a hot swap waits on).
//
// Memory ordering: ServiceStats has one writer at a time (the worker or caller
// owning its lane; ownership passes through the lane's acq_rel LaneSchedule) and
// any number of readers. Every field is an atomic read and written relaxed:
// a reader sees each value whole, possibly one batch old, never torn; counts
// only grow. CircuitBreaker publishes its state with release stores and is read
// with acquire loads, lock-free; recording an outcome and every transition
// take mu_. RetryBudget is one atomic updated by compare-exchange loops, so
// its balance never leaves [0, cap]. HoldCount's count and retiring flag are
// sequentially consistent: a drop decrements, then reads the flag; a retirement
// sets the flag, then reads the count; so either the last drop sees the flag
// or the retirement sees zero, and no drained version goes unnoticed. Nothing
// here waits or allocates after construction.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <span>
#include <vector>

namespace fastroute {

// Weight of the newest sample in every moving average here.
inline constexpr double kEwmaWeight = 0.2;
// An idle replica's service time older than this is forgotten: a replica that
// looked slow once (e.g. in a burst of contention) and then got no traffic
// would otherwise never be chosen again, so its estimate would never refresh.
inline constexpr std::int64_t kServiceStaleNs = 1'000'000'000;

struct ServiceSnapshot {
  double request_ns = 0;  // EWMA time per request (batch time / batch size); 0 before the first batch
  double batch_ns = 0;    // EWMA time per batch
  double error_rate = 0;  // EWMA over batches of the share of requests that failed
  std::uint64_t completed = 0;  // requests run (ok or failed), ever
  std::uint64_t failed = 0;     // requests whose model call failed, ever
  std::int64_t last_ns = 0;     // when the last batch was recorded (0: never)
};

// One replica's service record. Thread-safe: record_batch from one thread at a
// time (the lane's owner), snapshot/request_ns from any; lock-free, no allocation.
class ServiceStats {
 public:
  // A batch of `requests` (> 0) ran in `duration_ns`, `failures` of them failed,
  // finishing at `now_ns`.
  void record_batch(std::int64_t duration_ns, std::size_t requests, std::size_t failures,
                    std::int64_t now_ns) noexcept;
  ServiceSnapshot snapshot() const noexcept;
  double request_ns() const noexcept { return request_ns_.load(std::memory_order_relaxed); }
  // request_ns(), or 0 (unknown) when the last sample is kServiceStaleNs older than now_ns.
  double fresh_request_ns(std::int64_t now_ns) const noexcept;
  // Forgets everything (a reused lane serves a new model).
  void reset() noexcept;

 private:
  std::atomic<double> request_ns_{0};
  std::atomic<double> batch_ns_{0};
  std::atomic<double> error_rate_{0};
  std::atomic<std::uint64_t> completed_{0};
  std::atomic<std::uint64_t> failed_{0};
  std::atomic<std::int64_t> last_ns_{0};
};

// ---- circuit breaker --------------------------------------------------------

enum class BreakerState : std::uint8_t { kClosed = 0, kOpen = 1, kHalfOpen = 2 };
inline constexpr const char* kBreakerStateNames[] = {"closed", "open", "half_open"};

enum class Admission : std::uint8_t { kAllowed = 0, kProbe = 1, kRejected = 2 };

struct BreakerConfig {
  double failure_rate = 0.5;          // opens when failures / calls in the window reach this
  std::uint32_t min_calls = 20;       // ... over at least this many calls
  std::int64_t window_ns = 1'000'000'000;
  std::int64_t cooldown_ns = 500'000'000;  // open this long before probing
  std::uint32_t probes = 3;           // successful probes in a row that close it
};

struct BreakerSnapshot {
  BreakerState state = BreakerState::kClosed;
  std::uint32_t window_calls = 0;
  std::uint32_t window_failures = 0;
  std::uint64_t opened = 0;             // times it opened
  std::uint64_t closed = 0;             // times it closed again
  std::uint64_t rejected = 0;           // requests shed while open
  std::int64_t last_change_ns = 0;      // clock of the last transition (0: none)
};

// A circuit breaker for one model version. The clock is the caller's: every
// call takes `now_ns`, so tests drive time. Thread-safe.
class CircuitBreaker {
 public:
  // Throws InvalidInput for a rate outside (0, 1], a window, cooldown or
  // probe count that is not positive.
  explicit CircuitBreaker(const BreakerConfig& config);

  // Lock-free except for the open -> half-open transition (mu_). Whether a
  // request may go to the model now: kProbe in half-open while probe slots
  // remain (report it with record(..., probe=true)), kRejected otherwise.
  Admission admit(std::int64_t now_ns);
  // Lock-free, changes nothing: whether admit(now_ns) would let a request through.
  bool would_admit(std::int64_t now_ns) const noexcept;
  // Takes mu_ briefly. The outcome of one admitted request.
  void record(bool ok, bool probe, std::int64_t now_ns);
  // A probe that was admitted but never ran (refused elsewhere): frees its slot.
  void cancel_probe() noexcept;
  // Lock-free.
  BreakerState state() const noexcept { return state_.load(std::memory_order_acquire); }
  // Takes mu_ briefly.
  BreakerSnapshot snapshot() const;
  const BreakerConfig& config() const noexcept { return config_; }

 private:
  static constexpr std::size_t kBuckets = 10;
  struct Bucket {
    std::int64_t epoch = -1;  // window_ns / kBuckets slices since the clock's origin
    std::uint32_t calls = 0;
    std::uint32_t failures = 0;
  };
  void count(bool ok, std::int64_t now_ns);        // mu_ held
  void totals(std::int64_t now_ns, std::uint32_t& calls, std::uint32_t& failures) const;  // mu_ held
  void transition(BreakerState to, std::int64_t now_ns);  // mu_ held

  const BreakerConfig config_;
  std::atomic<BreakerState> state_{BreakerState::kClosed};
  std::atomic<std::int64_t> reopen_at_ns_{0};   // open: probing may start then
  std::atomic<std::uint32_t> probes_admitted_{0};  // half-open: probe slots taken
  std::atomic<std::uint64_t> rejected_{0};

  mutable std::mutex mu_;
  Bucket buckets_[kBuckets];            // guarded by mu_
  std::uint32_t probe_successes_ = 0;   // guarded by mu_
  std::uint64_t opened_ = 0;            // guarded by mu_
  std::uint64_t closed_ = 0;            // guarded by mu_
  std::int64_t last_change_ns_ = 0;     // guarded by mu_
};

// ---- retry budget -----------------------------------------------------------

// Retries may add at most `ratio` extra load: every request deposits `ratio`
// of a retry, every retry withdraws one, and the balance is capped at `burst`
// retries (so an idle period cannot save up a storm). Thread-safe, lock-free.
class RetryBudget {
 public:
  // Throws InvalidInput for a ratio outside [0, 1] or a burst below 0.
  RetryBudget(double ratio, double burst);
  void on_request() noexcept;
  // True (and one retry withdrawn) if the budget allows a retry now.
  bool try_spend() noexcept;
  double balance() const noexcept;

 private:
  static constexpr std::int64_t kUnit = 1'000'000;  // one retry, in fixed point
  const std::int64_t deposit_;
  const std::int64_t cap_;
  std::atomic<std::int64_t> balance_;
};

// ---- the load-aware choice --------------------------------------------------

// One candidate model as the decision sees it.
struct CandidateLoad {
  double quality = 0;            // predicted quality for this input
  double cost = 0;               // cost per request
  double expected_ns = 0;        // queue ahead / service rate + service time
  bool available = true;         // its breaker admits requests
};

// Priority-class weights: utility = quality - cost_weight * extra cost
// - time_weight * extra seconds (see choose_under_load).
struct LoadWeights {
  double time_per_s = 0;
  double cost = 0;
};

enum class LatePolicy : std::uint8_t { kRefuse = 0, kFastest = 1 };

enum class ChoiceReason : std::uint8_t {
  kPreferred = 0,    // the wrapped policy's choice scored best
  kSpilled = 1,      // another candidate scored better under load
  kPreferredLate = 2,  // the preferred would miss the deadline: best feasible other
  kUnavailable = 3,  // the preferred's breaker is open: best other
  kFastestLate = 4,  // every candidate misses the deadline: the fastest (LatePolicy::kFastest)
  kRefusedLate = 5,  // every candidate misses the deadline: refuse (LatePolicy::kRefuse)
  kNoneAvailable = 6,  // every candidate's breaker is open
};
inline constexpr const char* kChoiceReasonNames[] = {
    "preferred", "spilled", "preferred_late", "unavailable", "fastest_late", "refused_late", "none_available"};

struct LoadChoice {
  int index = -1;  // -1 when refused or nothing is available
  ChoiceReason reason = ChoiceReason::kPreferred;
};

// Thread-safe, pure, no allocation. Picks the candidate of highest utility
//   quality' - cost_weight * max(0, cost - cost[preferred])
//            - time_weight * max(0, expected - preferred's idle time)
// among the available candidates that can finish within `budget_ns`, where
// quality' is the candidate's quality except the preferred (the wrapped
// policy's choice) whose quality is at least every other's: on an idle system
// nothing beats it, so the wrapped policy's choice stands. Ties go to the
// preferred, else to the candidate `random` selects among the tied. When no
// available candidate finishes in time, `late` decides. Throws InvalidInput
// for an empty span or a preferred index out of range.
LoadChoice choose_under_load(std::span<const CandidateLoad> candidates, std::size_t preferred,
                             double preferred_idle_ns, const LoadWeights& weights, std::int64_t budget_ns,
                             LatePolicy late, std::uint64_t random);

// ---- leases ---------------------------------------------------------------

enum class DropOutcome : std::uint8_t {
  kHeld = 0,     // other holds remain, or the version is not retiring
  kDrained = 1,  // the last hold of a retiring version: tell whoever waits for it
  kNotHeld = 2,  // nothing was held: a caller's mistake, the count is unchanged
};

// How many requests hold one model version, and whether it is retiring.
// Thread-safe, lock-free, never blocks or allocates, never fails.
class HoldCount {
 public:
  void hold() noexcept { count_.fetch_add(1, std::memory_order_seq_cst); }
  DropOutcome drop() noexcept;
  // Requests holding the version now.
  std::int64_t count() const noexcept { return count_.load(std::memory_order_seq_cst); }
  // From now on, the last drop reports kDrained.
  void mark_retiring() noexcept { retiring_.store(true, std::memory_order_seq_cst); }
  bool retiring() const noexcept { return retiring_.load(std::memory_order_seq_cst); }

 private:
  std::atomic<std::int64_t> count_{0};
  std::atomic<bool> retiring_{false};
};

}  // namespace fastroute
