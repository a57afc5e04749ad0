// The clock every deadline is measured on, and Parker: a wait point that
// spins briefly, then parks on a condition variable.
//
// Memory ordering: a Parker's sleeper count is only touched with
// read-modify-writes (acq_rel): a waiter's increment and a notifier's
// fetch_add(0) are ordered one way or the other, so either the notifier sees
// the sleeper or the sleeper, synchronised with the notifier, sees the
// condition it made true: no lost wake-ups (and no fences, which
// ThreadSanitizer does not model).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <limits>
#include <mutex>
#include <thread>

namespace fastroute {

inline constexpr std::int64_t kNoDeadline = std::numeric_limits<std::int64_t>::max();
// Durations of this many seconds or more (about 292 years; also inf) are no
// deadline at all: their nanoseconds would overflow kNoDeadline's int64.
inline constexpr double kNoDeadlineFromSeconds = 9.2e9;

// Nanoseconds on the monotonic clock every deadline and delay is measured on.
inline std::int64_t now_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Spins until ready() or now_ns() reaches spin_end_ns: a few pause
// instructions, then yields. On a machine with more runnable threads than
// cores, a waiter pause-spinning on a core the thread it waits for needs would
// stretch every hand-off by up to the whole spin (measured: 223 us instead of
// 19-24 us per no-op round trip at a 100 us spin). Returns whether ready().
// Thread-safe as ready() is; never blocks, never allocates.
template <typename Ready>
bool spin_until(Ready ready, std::int64_t spin_end_ns) {
  constexpr unsigned kPauseSpins = 64;  // ~1-2 us of pause instructions
  for (unsigned i = 1;; ++i) {
    if (ready()) return true;
    if (i < kPauseSpins) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
      continue;
    }
    if (now_ns() >= spin_end_ns) return false;
    std::this_thread::yield();
  }
}

// A wait point for one condition: spin (bounded), then park on a condition
// variable. notify_*() is one uncontended read-modify-write when nobody is parked.
// Thread-safe; wait_until blocks; nothing allocates.
class Parker {
 public:
  // Returns ready() once true, or false at deadline_ns (kNoDeadline: never).
  template <typename Ready>
  bool wait_until(Ready ready, std::int64_t deadline_ns, std::int64_t spin_ns) {
    if (spin_until(ready, std::min(deadline_ns, now_ns() + spin_ns))) return true;
    sleepers_.fetch_add(1, std::memory_order_acq_rel);
    bool result;
    {
      std::unique_lock lock(mu_);
      if (deadline_ns == kNoDeadline) {
        cv_.wait(lock, ready);
        result = true;
      } else {
        const auto until = std::chrono::steady_clock::time_point(std::chrono::nanoseconds(deadline_ns));
        result = cv_.wait_until(lock, until, ready);
      }
    }
    sleepers_.fetch_sub(1, std::memory_order_acq_rel);
    return result;
  }

  // Call after making the condition true.
  void notify_one() { notify(false); }
  void notify_all() { notify(true); }

 private:
  void notify(bool all) {
    if (sleepers_.fetch_add(0, std::memory_order_acq_rel) == 0) return;
    std::lock_guard lock(mu_);  // a waiter between its check and its wait holds mu_
    if (all) {
      cv_.notify_all();
    } else {
      cv_.notify_one();
    }
  }

  std::atomic<int> sleepers_{0};
  std::mutex mu_;  // guards nothing but the sleep/notify hand-off
  std::condition_variable cv_;
};

}  // namespace fastroute
