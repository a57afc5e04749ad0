#include "model_state.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "errors.hpp"

namespace fastroute {
namespace {

double blend(double average, double sample, bool first) noexcept {
  return first ? sample : average + kEwmaWeight * (sample - average);
}

}  // namespace

// ---- ServiceStats -------------------------------------------------------------

void ServiceStats::record_batch(std::int64_t duration_ns, std::size_t requests, std::size_t failures,
                                std::int64_t now_ns) noexcept {
  if (requests == 0) return;
  failures = std::min(failures, requests);
  const bool first = completed_.load(std::memory_order_relaxed) == 0;
  const double batch = static_cast<double>(std::max<std::int64_t>(duration_ns, 0));
  const double per_request = batch / static_cast<double>(requests);
  const double errors = static_cast<double>(failures) / static_cast<double>(requests);
  batch_ns_.store(blend(batch_ns_.load(std::memory_order_relaxed), batch, first), std::memory_order_relaxed);
  request_ns_.store(blend(request_ns_.load(std::memory_order_relaxed), per_request, first), std::memory_order_relaxed);
  error_rate_.store(blend(error_rate_.load(std::memory_order_relaxed), errors, first), std::memory_order_relaxed);
  failed_.fetch_add(failures, std::memory_order_relaxed);
  completed_.fetch_add(requests, std::memory_order_relaxed);
  last_ns_.store(now_ns, std::memory_order_relaxed);
}

double ServiceStats::fresh_request_ns(std::int64_t now_ns) const noexcept {
  const std::int64_t last = last_ns_.load(std::memory_order_relaxed);
  return now_ns - last > kServiceStaleNs ? 0.0 : request_ns_.load(std::memory_order_relaxed);
}

ServiceSnapshot ServiceStats::snapshot() const noexcept {
  return {request_ns_.load(std::memory_order_relaxed), batch_ns_.load(std::memory_order_relaxed),
          error_rate_.load(std::memory_order_relaxed), completed_.load(std::memory_order_relaxed),
          failed_.load(std::memory_order_relaxed), last_ns_.load(std::memory_order_relaxed)};
}

void ServiceStats::reset() noexcept {
  request_ns_.store(0, std::memory_order_relaxed);
  batch_ns_.store(0, std::memory_order_relaxed);
  error_rate_.store(0, std::memory_order_relaxed);
  completed_.store(0, std::memory_order_relaxed);
  failed_.store(0, std::memory_order_relaxed);
  last_ns_.store(0, std::memory_order_relaxed);
}

// ---- CircuitBreaker -------------------------------------------------------------

CircuitBreaker::CircuitBreaker(const BreakerConfig& config) : config_(config) {
  if (!(config.failure_rate > 0 && config.failure_rate <= 1)) {
    throw InvalidInput("breaker failure_rate must be in (0, 1], got " + std::to_string(config.failure_rate));
  }
  if (config.window_ns < static_cast<std::int64_t>(kBuckets) || config.cooldown_ns <= 0 || config.probes == 0 ||
      config.min_calls == 0) {
    throw InvalidInput("breaker window, cooldown, min_calls and probes must be positive (window >= 10 ns)");
  }
}

Admission CircuitBreaker::admit(std::int64_t now_ns) {
  BreakerState current = state_.load(std::memory_order_acquire);
  if (current == BreakerState::kClosed) return Admission::kAllowed;
  if (current == BreakerState::kOpen) {
    if (now_ns < reopen_at_ns_.load(std::memory_order_acquire)) {
      rejected_.fetch_add(1, std::memory_order_relaxed);
      return Admission::kRejected;
    }
    std::lock_guard lock(mu_);
    if (state_.load(std::memory_order_relaxed) == BreakerState::kOpen) transition(BreakerState::kHalfOpen, now_ns);
    current = state_.load(std::memory_order_relaxed);
    if (current == BreakerState::kClosed) return Admission::kAllowed;
  }
  // Half-open: take a probe slot if one is free (never more than config_.probes).
  std::uint32_t taken = probes_admitted_.load(std::memory_order_relaxed);
  while (taken < config_.probes) {
    if (probes_admitted_.compare_exchange_weak(taken, taken + 1, std::memory_order_acq_rel)) return Admission::kProbe;
  }
  rejected_.fetch_add(1, std::memory_order_relaxed);
  return Admission::kRejected;
}

bool CircuitBreaker::would_admit(std::int64_t now_ns) const noexcept {
  switch (state_.load(std::memory_order_acquire)) {
    case BreakerState::kClosed:
      return true;
    case BreakerState::kOpen:
      return now_ns >= reopen_at_ns_.load(std::memory_order_acquire);
    default:
      return probes_admitted_.load(std::memory_order_relaxed) < config_.probes;
  }
}

void CircuitBreaker::cancel_probe() noexcept {
  std::uint32_t taken = probes_admitted_.load(std::memory_order_relaxed);
  while (taken > 0 && !probes_admitted_.compare_exchange_weak(taken, taken - 1, std::memory_order_acq_rel)) {
  }
}

void CircuitBreaker::record(bool ok, bool probe, std::int64_t now_ns) {
  std::lock_guard lock(mu_);
  const BreakerState current = state_.load(std::memory_order_relaxed);
  if (current == BreakerState::kHalfOpen) {
    if (!probe) return;  // admitted before it opened: says nothing about the model now
    if (!ok) {
      transition(BreakerState::kOpen, now_ns);
    } else if (++probe_successes_ >= config_.probes) {
      transition(BreakerState::kClosed, now_ns);
    }
    return;
  }
  if (current == BreakerState::kOpen) return;
  count(ok, now_ns);
  std::uint32_t calls = 0, failures = 0;
  totals(now_ns, calls, failures);
  if (calls >= config_.min_calls &&
      static_cast<double>(failures) >= config_.failure_rate * static_cast<double>(calls)) {
    transition(BreakerState::kOpen, now_ns);
  }
}

void CircuitBreaker::count(bool ok, std::int64_t now_ns) {
  const std::int64_t slice = config_.window_ns / static_cast<std::int64_t>(kBuckets);
  const std::int64_t epoch = now_ns / slice;
  Bucket& bucket = buckets_[static_cast<std::size_t>(epoch % static_cast<std::int64_t>(kBuckets))];
  if (bucket.epoch != epoch) bucket = Bucket{epoch, 0, 0};
  ++bucket.calls;
  bucket.failures += ok ? 0 : 1;
}

void CircuitBreaker::totals(std::int64_t now_ns, std::uint32_t& calls, std::uint32_t& failures) const {
  const std::int64_t slice = config_.window_ns / static_cast<std::int64_t>(kBuckets);
  const std::int64_t oldest = now_ns / slice - static_cast<std::int64_t>(kBuckets) + 1;
  for (const Bucket& bucket : buckets_) {
    if (bucket.epoch >= oldest) {
      calls += bucket.calls;
      failures += bucket.failures;
    }
  }
}

void CircuitBreaker::transition(BreakerState to, std::int64_t now_ns) {
  last_change_ns_ = now_ns;
  if (to == BreakerState::kOpen) {
    ++opened_;
    reopen_at_ns_.store(now_ns + config_.cooldown_ns, std::memory_order_release);
  } else if (to == BreakerState::kHalfOpen) {
    probe_successes_ = 0;
    probes_admitted_.store(0, std::memory_order_release);
  } else {
    ++closed_;
    for (Bucket& bucket : buckets_) bucket = Bucket{};  // a closed breaker starts a fresh window
  }
  state_.store(to, std::memory_order_release);
}

BreakerSnapshot CircuitBreaker::snapshot() const {
  std::lock_guard lock(mu_);
  BreakerSnapshot out;
  out.state = state_.load(std::memory_order_relaxed);
  // The window as of the newest bucket recorded (the breaker has no clock of its own).
  std::int64_t newest = 0;
  for (const Bucket& bucket : buckets_) newest = std::max(newest, bucket.epoch);
  totals(newest * (config_.window_ns / static_cast<std::int64_t>(kBuckets)), out.window_calls, out.window_failures);
  out.opened = opened_;
  out.closed = closed_;
  out.rejected = rejected_.load(std::memory_order_relaxed);
  out.last_change_ns = last_change_ns_;
  return out;
}

// ---- RetryBudget ------------------------------------------------------------------

RetryBudget::RetryBudget(double ratio, double burst)
    : deposit_(static_cast<std::int64_t>(std::llround(std::clamp(ratio, 0.0, 1.0) * kUnit))),
      cap_(static_cast<std::int64_t>(std::llround(std::clamp(burst, 0.0, 1e6) * kUnit))),
      balance_(0) {
  if (!(ratio >= 0 && ratio <= 1)) throw InvalidInput("retry budget ratio must be in [0, 1], got " + std::to_string(ratio));
  if (!(burst >= 0 && burst <= 1e6)) throw InvalidInput("retry budget burst must be in [0, 1e6], got " + std::to_string(burst));
}

void RetryBudget::on_request() noexcept {
  std::int64_t current = balance_.load(std::memory_order_relaxed);
  while (current < cap_ &&
         !balance_.compare_exchange_weak(current, std::min(cap_, current + deposit_), std::memory_order_relaxed)) {
  }
}

bool RetryBudget::try_spend() noexcept {
  std::int64_t current = balance_.load(std::memory_order_relaxed);
  while (current >= kUnit) {
    if (balance_.compare_exchange_weak(current, current - kUnit, std::memory_order_relaxed)) return true;
  }
  return false;
}

double RetryBudget::balance() const noexcept {
  return static_cast<double>(balance_.load(std::memory_order_relaxed)) / kUnit;
}

// ---- choose_under_load --------------------------------------------------------------

LoadChoice choose_under_load(std::span<const CandidateLoad> candidates, std::size_t preferred,
                             double preferred_idle_ns, const LoadWeights& weights, std::int64_t budget_ns,
                             LatePolicy late, std::uint64_t random) {
  if (candidates.empty()) throw InvalidInput("choose_under_load needs at least one candidate");
  if (preferred >= candidates.size()) {
    throw InvalidInput("preferred candidate " + std::to_string(preferred) + " out of " +
                       std::to_string(candidates.size()));
  }
  const CandidateLoad& pick = candidates[preferred];
  double top_quality = pick.quality;
  for (const CandidateLoad& c : candidates) top_quality = std::max(top_quality, c.quality);
  const double budget = static_cast<double>(budget_ns);
  const auto utility = [&](std::size_t i) {
    const CandidateLoad& c = candidates[i];
    const double quality = i == preferred ? top_quality : c.quality;
    const double extra_s = std::max(0.0, c.expected_ns - preferred_idle_ns) * 1e-9;
    return quality - weights.cost * std::max(0.0, c.cost - pick.cost) - weights.time_per_s * extra_s;
  };

  int best = -1;
  double best_utility = -std::numeric_limits<double>::infinity();
  std::size_t ties = 0;  // reservoir sampling among equal utilities (the preferred always wins its ties)
  int fastest = -1;
  bool any_available = false;
  for (std::size_t i = 0; i < candidates.size(); ++i) {
    const CandidateLoad& c = candidates[i];
    if (!c.available) continue;
    any_available = true;
    if (fastest < 0 || c.expected_ns < candidates[static_cast<std::size_t>(fastest)].expected_ns) {
      fastest = static_cast<int>(i);
    }
    if (!(c.expected_ns <= budget)) continue;
    const double u = utility(i);
    if (u > best_utility || (u == best_utility && i == preferred)) {
      best = static_cast<int>(i);
      best_utility = u;
      ties = 1;
    } else if (u == best_utility && best != static_cast<int>(preferred)) {
      ++ties;
      // splitmix64 step, then a draw in [0, ties): keep this one with chance 1/ties.
      random += 0x9e3779b97f4a7c15ULL;
      std::uint64_t z = random;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
      z ^= z >> 31;
      if (z % ties == 0) best = static_cast<int>(i);
    }
  }
  if (!any_available) return {-1, ChoiceReason::kNoneAvailable};
  if (best < 0) {
    if (late == LatePolicy::kRefuse) return {-1, ChoiceReason::kRefusedLate};
    return {fastest, ChoiceReason::kFastestLate};
  }
  if (best == static_cast<int>(preferred)) return {best, ChoiceReason::kPreferred};
  if (!pick.available) return {best, ChoiceReason::kUnavailable};
  if (!(pick.expected_ns <= budget)) return {best, ChoiceReason::kPreferredLate};
  return {best, ChoiceReason::kSpilled};
}

DropOutcome HoldCount::drop() noexcept {
  std::int64_t seen = count_.load(std::memory_order_seq_cst);
  do {
    if (seen <= 0) return DropOutcome::kNotHeld;
  } while (!count_.compare_exchange_weak(seen, seen - 1, std::memory_order_seq_cst));
  return seen == 1 && retiring() ? DropOutcome::kDrained : DropOutcome::kHeld;
}

}  // namespace fastroute
