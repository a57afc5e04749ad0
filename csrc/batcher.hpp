// Batcher: one model replica's request queues (a Lane) and the rule that
// turns them into batches: take requests, high priority first, until
// max_batch are ready or max_delay has passed since the first one was queued.
// Requests whose deadline has passed are set aside as expired, never run.
//
// Memory ordering: producers publish a request through the lock-free queue
// (release/acquire on the slot, see queue.hpp). A Parker's sleeper count is
// only touched with read-modify-writes (acq_rel): a waiter's increment and a
// notifier's fetch_add(0) are ordered one way or the other, so either the
// notifier sees the sleeper or the sleeper, synchronised with the notifier,
// sees the condition it made true: no lost wake-ups (and no fences, which
// ThreadSanitizer does not model).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <mutex>
#include <thread>
#include <vector>

#include "model_state.hpp"
#include "queue.hpp"
#include "stage_histogram.hpp"

namespace fastroute {

// An opaque request handle: the dispatcher never looks inside it, and hands
// every accepted one to the batch sink exactly once.
using Payload = std::uintptr_t;

enum class Priority : std::uint8_t { kHigh = 0, kNormal = 1 };
inline constexpr std::size_t kPriorityCount = 2;
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

struct Request {
  Payload payload = 0;
  std::int64_t enqueued_ns = 0;
  std::int64_t deadline_ns = kNoDeadline;
};
static_assert(std::is_trivially_copyable_v<Request>, "requests move through the ring by copy");

// What one worker hands to the sink: the payloads of one lane, by outcome.
struct Batch {
  std::size_t lane = 0;
  std::vector<Payload> ready;    // to run, in queue order (high priority first)
  std::vector<Payload> expired;  // deadline passed before they could run
  std::vector<Payload> aborted;  // dropped by a close or retire without drain

  std::size_t size() const noexcept { return ready.size() + expired.size() + aborted.size(); }
  void clear() noexcept {
    ready.clear();
    expired.clear();
    aborted.clear();
  }
};

// A wait point for one condition: spin (bounded), then park on a condition
// variable. notify_*() is one uncontended read-modify-write when nobody is parked.
// Thread-safe; wait_until blocks; nothing allocates.
class Parker {
 public:
  // Returns ready() once true, or false at deadline_ns (kNoDeadline: never).
  template <typename Ready>
  bool wait_until(Ready ready, std::int64_t deadline_ns, std::int64_t spin_ns) {
    const std::int64_t spin_end = std::min(deadline_ns, now_ns() + spin_ns);
    for (unsigned i = 1;; ++i) {
      if (ready()) return true;
      if (i % 64 == 0 && now_ns() >= spin_end) break;
      cpu_relax();
    }
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
  static void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#else
    std::this_thread::yield();
#endif
  }
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

// One replica's queues and scheduling state. Thread-safe.
struct Lane {
  explicit Lane(std::size_t capacity) : queues{MpmcQueue<Request>(capacity), MpmcQueue<Request>(capacity)} {}

  // Approximate (see MpmcQueue::size).
  std::size_t queued() const noexcept { return queues[0].size() + queues[1].size(); }

  MpmcQueue<Request> queues[kPriorityCount];   // index: Priority
  std::atomic<bool> scheduled{false};          // in the ready list or owned by a worker
  std::atomic<bool> closed{false};             // rejects new requests
  std::atomic<bool> aborting{false};           // hand queued requests back as aborted
  std::atomic<std::int64_t> in_flight{0};      // popped, not yet returned by the sink
  Parker arrivals;                             // a worker filling a batch waits here
  Parker progress;                             // producers wanting room, retire() waiting for drain
  ServiceStats service;                        // written by the worker owning the lane (see BatchStream)
  LaneStages stages;                           // recorded by the worker owning the lane (collect_batch, BatchStream)
};

struct BatchLimits {
  std::size_t max_batch = 32;
  std::int64_t max_delay_ns = 200'000;
  std::int64_t spin_ns = 20'000;
};

// Fills `batch` from `lane` (the caller owns the lane: one batcher at a time
// per lane, which keeps each priority class FIFO). Returns false if the lane
// was empty. With `wait`, blocks at most max_delay after the first request
// was queued for the batch to fill; without, takes only what is queued.
// Records each request's queue wait and the batch's wait in lane.stages.
bool collect_batch(Lane& lane, const BatchLimits& limits, Batch& batch, bool wait = true);

}  // namespace fastroute
