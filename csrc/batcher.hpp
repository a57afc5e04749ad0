// Batcher: one model replica's request queues (a Lane) and the rule that
// turns them into batches: take requests, high priority first, until
// max_batch are ready or max_delay has passed since the first one was queued.
// Requests whose deadline has passed are set aside as expired, never run.
//
// Memory ordering: producers publish a request through the lock-free queue
// (release/acquire on the slot, see queue.hpp); waits go through Parkers
// (parker.hpp).
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
#include "parker.hpp"
#include "queue.hpp"
#include "stage_histogram.hpp"

namespace fastroute {

// An opaque request handle: the dispatcher never looks inside it, and hands
// every accepted one to the batch sink exactly once.
using Payload = std::uintptr_t;

enum class Priority : std::uint8_t { kHigh = 0, kNormal = 1 };
inline constexpr std::size_t kPriorityCount = 2;
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

// Who serves a lane next: one word changed only by read-modify-writes
// (acq_rel), so every change reads the one before it (see dispatcher.hpp's
// "Memory ordering"). Bits: kInRing, the lane's id sits in the ready ring
// (set only by whoever pushes the id, cleared only by the worker that pops
// it: at most one entry per lane); kOwned, a worker or a caller is serving
// the lane (one at a time). Thread-safe, lock-free, never allocates.
class LaneSchedule {
 public:
  // After a push: true if the lane was idle and is now marked in the ring (the
  // caller must push its id). Otherwise it writes back what it read, so the
  // owner's release() is ordered after the push.
  bool mark_arrival() noexcept {
    return change([](std::uint8_t seen) -> std::uint8_t { return seen == 0 ? kInRing : seen; }) == 0;
  }
  // By the worker that popped the id: true if it now owns the lane; false if a
  // caller owns it (the entry is dropped; the caller reschedules on release).
  bool claim_from_ring() noexcept {
    return (change([](std::uint8_t seen) -> std::uint8_t {
              return (seen & kOwned) ? seen & ~kInRing : (seen & ~kInRing) | kOwned;
            }) & kOwned) == 0;
  }
  // By a caller: true if it now owns the lane (no one was serving it); a ring
  // entry, if any, stays for the worker that pops it.
  bool claim_by_caller() noexcept {
    return (change([](std::uint8_t seen) -> std::uint8_t { return seen | kOwned; }) & kOwned) == 0;
  }
  // By the owner: gives the lane up. True if no ring entry is left either: the
  // owner must then reschedule (mark_arrival) if requests remain.
  bool release() noexcept {
    return change([](std::uint8_t seen) -> std::uint8_t { return seen & ~kOwned; }) == kOwned;
  }
  // A worker or a caller is serving the lane now (retire's drain check: a ring
  // entry left behind by a caller's run does not count; the worker popping it
  // finds nothing to serve).
  bool owned() const noexcept { return (word_.load(std::memory_order_seq_cst) & kOwned) != 0; }

 private:
  static constexpr std::uint8_t kInRing = 1, kOwned = 2;

  // Applies next() in one compare-exchange loop; returns the word it replaced.
  template <typename Next>
  std::uint8_t change(Next next) noexcept {
    std::uint8_t seen = word_.load(std::memory_order_acquire);
    while (!word_.compare_exchange_weak(seen, next(seen), std::memory_order_acq_rel, std::memory_order_acquire)) {
    }
    return seen;
  }

  std::atomic<std::uint8_t> word_{0};
};

// One replica's queues and scheduling state. Thread-safe.
struct Lane {
  explicit Lane(std::size_t capacity) : queues{MpmcQueue<Request>(capacity), MpmcQueue<Request>(capacity)} {}

  // Approximate (see MpmcQueue::size).
  std::size_t queued() const noexcept { return queues[0].size() + queues[1].size(); }

  MpmcQueue<Request> queues[kPriorityCount];   // index: Priority
  LaneSchedule schedule;                       // in the ready ring, owned by a worker or a caller
  std::atomic<bool> closed{false};             // rejects new requests (retire(), close())
  std::atomic<bool> aborting{false};           // hand queued requests back as aborted
  std::atomic<bool> fill_batches{true};        // wait up to max_delay for a batch to fill; set by add_lane before any push
  std::atomic<std::int64_t> in_flight{0};      // popped, not yet returned by the sink
  std::atomic<std::int64_t> last_push_ns{0};   // when a request was last accepted (a hint: relaxed)
  Parker arrivals;                             // a worker filling a batch waits here
  Parker progress;                             // producers wanting room, retire() waiting for drain
  ServiceStats service;                        // written by the lane's owner (see BatchStream)
  LaneStages stages;                           // recorded by the lane's owner (collect_batch, BatchStream)
};

struct BatchLimits {
  std::size_t max_batch = 32;
  std::int64_t max_delay_ns = 200'000;
  std::int64_t spin_ns = 20'000;
};

// Fills `batch` from `lane` (the caller owns the lane, see LaneSchedule: one batcher at a time
// per lane, which keeps each priority class FIFO). Returns false if the lane
// was empty. With `wait` (and lane.fill_batches), blocks at most max_delay
// after the first request was queued for the batch to fill; without, takes
// only what is queued.
// Records each request's queue wait, the batch's wait and size in lane.stages.
bool collect_batch(Lane& lane, const BatchLimits& limits, Batch& batch, bool wait = true);

}  // namespace fastroute
