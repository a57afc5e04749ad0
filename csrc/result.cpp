#include "result.hpp"

namespace fastroute {

bool ResultSlot::done() const noexcept {
  const ResultState seen = state();
  return seen == ResultState::kSucceeded || seen == ResultState::kFailed || seen == ResultState::kCancelled;
}

StartOutcome ResultSlot::start() noexcept {
  ResultState expected = ResultState::kPending;
  if (state_.compare_exchange_strong(expected, ResultState::kRunning, std::memory_order_acq_rel)) {
    return StartOutcome::kStarted;
  }
  return expected == ResultState::kCancelled ? StartOutcome::kCancelled : StartOutcome::kNotPending;
}

bool ResultSlot::cancel() {
  ResultState expected = ResultState::kPending;
  if (state_.compare_exchange_strong(expected, ResultState::kCancelled, std::memory_order_acq_rel)) {
    parker_.notify_all();
    return true;
  }
  return expected == ResultState::kCancelled;
}

bool ResultSlot::wait_until(std::int64_t deadline_ns, std::int64_t spin_ns) {
  return parker_.wait_until([this] { return done(); }, deadline_ns, spin_ns);
}

bool PresenceCount::spin_until(bool wanted, std::int64_t spin_ns) const {
  return fastroute::spin_until([&] { return any() == wanted; }, now_ns() + spin_ns);
}

}  // namespace fastroute
