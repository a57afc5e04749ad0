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

// One replica's queues and scheduling state. Thread-safe.
struct Lane {
  explicit Lane(std::size_t capacity) : queues{MpmcQueue<Request>(capacity), MpmcQueue<Request>(capacity)} {}

  // Approximate (see MpmcQueue::size).
  std::size_t queued() const noexcept { return queues[0].size() + queues[1].size(); }

  MpmcQueue<Request> queues[kPriorityCount];   // index: Priority
  std::atomic<bool> scheduled{false};          // in the ready list or owned by a worker
  std::atomic<bool> closed{false};             // rejects new requests (retire(), close())
  std::atomic<bool> aborting{false};           // hand queued requests back as aborted
  std::atomic<bool> fill_batches{true};        // wait up to max_delay for a batch to fill; set by add_lane before any push
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
// was empty. With `wait` (and lane.fill_batches), blocks at most max_delay
// after the first request was queued for the batch to fill; without, takes
// only what is queued.
// Records each request's queue wait, the batch's wait and size in lane.stages.
bool collect_batch(Lane& lane, const BatchLimits& limits, Batch& batch, bool wait = true);

}  // namespace fastroute
