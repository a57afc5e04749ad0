// Dispatcher: worker threads that take whole batches from model replicas'
// lanes (see batcher.hpp) and hand them to one sink callback.
//
// Scheduling: a lane holding requests is "scheduled": its id sits in the
// ready ring or a worker owns it. A producer that finds the lane unscheduled
// puts its id in the ready ring and wakes a worker. A worker owns one lane at
// a time, so one lane's batches run in order (FIFO per priority class) and a
// sink that hangs on one lane stalls only the worker serving it.
// Idle workers spin for spin_us, then park: an idle worker burns no core.
//
// Memory ordering: a producer pushes, then exchanges Lane::scheduled to true;
// a worker done with a lane exchanges it to false, then reads the queue
// sizes. Both are acq_rel read-modify-writes of one atomic, so one follows the
// other: either the producer reads false and schedules the lane, or the
// worker's exchange synchronises with the producer's and it sees the request
// and reschedules. A request is never left in an unscheduled lane. close()
// and retire() wait for in-progress pushes through the seq_cst counter
// pushers_ (checked against the seq_cst closed flags).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include "batcher.hpp"

namespace fastroute {

// Every dispatcher setting, written once: name, type, default, lowest, highest.
// DispatchConfig and validate() are made from it, and so are Python's
// ExecutorConfig and the config files' executor section (through
// fastroute._core.DISPATCH_SETTINGS).
//   threads: worker threads; max_batch: most requests per model call;
//   max_delay_us: longest wait after a batch's first request (lanes that fill
//   batches, see add_lane); queue_capacity:
//   per lane and priority, rounded up to a power of two; max_lanes: most lanes
//   (model replicas) at once; spin_us: how long an idle worker spins before parking.
#define FASTROUTE_DISPATCH_SETTINGS(X)                  \
  X(threads, std::size_t, 2, 1, 1024)                   \
  X(max_batch, std::size_t, 32, 1, 1 << 20)             \
  X(max_delay_us, std::int64_t, 200, 0, 60'000'000)     \
  X(queue_capacity, std::size_t, 4096, 1, 1 << 24)      \
  X(max_lanes, std::size_t, 1024, 1, 1 << 16)           \
  X(spin_us, std::int64_t, 20, 0, 1'000'000)

struct DispatchConfig {
#define FASTROUTE_SETTING_FIELD(name, type, fallback, lowest, highest) type name = fallback;
  FASTROUTE_DISPATCH_SETTINGS(FASTROUTE_SETTING_FIELD)
#undef FASTROUTE_SETTING_FIELD
};

enum class PushStatus : std::uint8_t { kAccepted, kFull, kClosed };

struct LaneStats {
  std::size_t queued = 0;       // approximate under concurrency
  std::int64_t in_flight = 0;   // taken by a worker, not yet returned by the sink (never negative)
  bool closed = false;
  std::size_t queued_high = 0;  // of queued, the high-priority ones
  ServiceSnapshot service;      // service times and errors of the batches run so far
};

// The batches one worker hands to the sink in one call: the first one, then
// (through next()) any further batches already queued on the same lane, so a
// sink with a fixed cost per call (taking the GIL) pays it once for all of
// them. Used only by the worker thread the sink runs on.
class BatchStream {
 public:
  Batch& batch() noexcept { return batch_; }
  // Marks the current batch done and takes the next one from the lane without
  // waiting. False (and an empty batch) when the lane has nothing queued or
  // after kMaxBatchesPerCall batches, so other lanes get their turn.
  bool next();
  // How many requests of the current batch failed (the sink's verdict; the
  // dispatcher cannot tell). Recorded with the batch's service time.
  void report_failures(std::size_t failures) noexcept { failures_ = failures; }

  static constexpr int kMaxBatchesPerCall = 16;

 private:
  friend class Dispatcher;
  BatchStream(Lane& lane, const BatchLimits& limits, Batch& batch)
      : lane_(lane), limits_(limits), batch_(batch), started_ns_(now_ns()) {}
  void finish_current() noexcept;

  Lane& lane_;
  const BatchLimits& limits_;
  Batch& batch_;
  int batches_ = 1;
  std::int64_t started_ns_;   // when the sink got the current batch
  std::size_t failures_ = 0;  // reported for the current batch
};

// Receives every accepted payload exactly once, grouped by lane. Called from
// worker threads (never concurrently for one lane) and must not throw.
using BatchSink = std::function<void(BatchStream&)>;

// A sink calling `on_batch` for each batch of the stream (for sinks with no
// per-call cost to amortise).
inline BatchSink for_each_batch(std::function<void(const Batch&)> on_batch) {
  return [on_batch = std::move(on_batch)](BatchStream& stream) {
    do {
      on_batch(stream.batch());
    } while (stream.next());
  };
}

class Dispatcher {
 public:
  // Starts config.threads workers. Throws InvalidInput on a bad config.
  Dispatcher(const DispatchConfig& config, BatchSink sink);
  // Closes without draining (aborts what is queued) and joins the workers
  // still attached; workers an earlier close() detached finish on their own.
  ~Dispatcher();

  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  // Thread-safe. Reopens a lane freed by retire() if there is one (its rings
  // are reused), else allocates a new one. With fill_batches (a batched
  // model) a batch waits up to max_delay for more requests; without (a model
  // called once per request) a worker takes only what is queued: waiting
  // would add latency and merge no model calls. Throws Exhausted when
  // max_lanes lanes are in use and Closed after close().
  std::size_t add_lane(bool fill_batches = true);

  // Thread-safe, never allocates, never waits for room: a lock-free push,
  // plus a brief mutex hand-off only when it must wake a parked worker.
  // kFull: the lane's ring for `priority` is full; kClosed: the dispatcher or
  // lane is closed.
  // On anything but kAccepted the caller still owns `payload`.
  PushStatus try_push(std::size_t lane, Payload payload, Priority priority,
                      std::int64_t deadline_ns = kNoDeadline);
  // As try_push, but waits up to timeout_ns for room (spins, then parks).
  PushStatus push_wait(std::size_t lane, Payload payload, Priority priority,
                       std::int64_t deadline_ns, std::int64_t timeout_ns);

  // Thread-safe, non-blocking, lock-free. Throws InvalidInput for an unknown lane.
  LaneStats stats(std::size_t lane) const;
  // Thread-safe, non-blocking, lock-free: when a request pushed now with
  // `priority` would be done, in ns from now: (requests ahead of it + 1) x the
  // lane's EWMA time per request. Ahead: in flight, the queued high-priority
  // requests, and for a normal request the queued normal ones too.
  // 0 before the lane ran its first batch, and for an idle lane whose last batch is
  // older than kServiceStaleNs (see model_state.hpp). Throws InvalidInput for an unknown lane.
  double expected_ns(std::size_t lane, Priority priority) const;
  // The same for a model served by `lanes` (its replicas): the least expected
  // completion over them, and the least time per request (its idle service
  // time). Zeros for no lanes. Throws InvalidInput for an unknown lane.
  struct ModelLoad {
    double expected_ns = 0;
    double request_ns = 0;
  };
  ModelLoad model_load(std::span<const std::size_t> lanes, Priority priority) const;
  // Thread-safe, non-blocking, lock-free; allocates the snapshot. The lane's
  // stage histograms (see stage_histogram.hpp), counted since the lane was
  // added (a reused lane starts from zero). Throws InvalidInput for an unknown lane.
  LaneStagesSnapshot stages(std::size_t lane) const;
  std::size_t lane_count() const;
  // True once close() has begun (requests are refused from then on).
  bool closed() const noexcept;

  // Thread-safe, blocking. Closes one lane to new requests, waits until every
  // request it accepted went through the sink (run if drain, else aborted),
  // then frees it: a later add_lane() may return the same id for a new lane.
  // A push with the old id is refused (kClosed) until then, and goes to the
  // new lane after.
  void retire(std::size_t lane, bool drain);

  // Thread-safe, blocking, idempotent. Rejects new requests, runs (drain) or
  // aborts what is queued, wakes push_wait() callers (kClosed), then waits
  // up to timeout_ns for the workers and joins them. Returns false if they
  // did not all finish in time (a sink still running): those are detached
  // and keep the shared state alive until they return; a later close() waits
  // for them again (up to its own timeout) and may abort (drain = false)
  // what an earlier draining close() left queued. Called from a worker (inside
  // the sink) it cannot wait for itself: it starts the shutdown, detaches the
  // workers and returns false at once. Holds no lock while waiting.
  bool close(bool drain, std::int64_t timeout_ns = kNoDeadline);

  // Thread-safe; waits only for pushes in progress. The first half of close():
  // from its return on, every push is refused (kClosed) and, without drain,
  // every queued request is handed to the sink as aborted; it waits for no
  // worker.
  void begin_close(bool drain);

  // Thread-safe, non-blocking: true on one of this dispatcher's worker threads.
  bool on_worker_thread() const noexcept;

 private:
  struct Core;
  std::shared_ptr<Core> core_;
  std::mutex close_mu_;                // serialises joining and detaching the workers
  std::vector<std::thread> workers_;   // guarded by close_mu_
};

}  // namespace fastroute
