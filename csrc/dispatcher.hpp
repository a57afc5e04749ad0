// Dispatcher: worker threads that take whole batches from model replicas'
// lanes (see batcher.hpp) and hand them to one sink callback; and "caller
// runs": a thread waiting for one of its requests may serve that request's
// lane itself, on its own thread, when no one else is serving it.
//
// Scheduling: a lane holding requests is "scheduled": its id sits in the
// ready ring, or a worker or a caller owns it (LaneSchedule). A producer that
// finds the lane idle puts its id in the ready ring and wakes a worker. A
// lane has one owner at a time, so one lane's batches run in order (FIFO per
// priority class) and a sink that hangs on one lane stalls only the thread
// serving it. A worker that pops the id of a lane a caller owns drops the
// entry; the caller, when it gives the lane up, reschedules it if requests
// remain. A worker that pops a lane callers may serve leaves it to them until
// kCallerGraceNs after its latest push (its submitter is likely on its way to
// result()), or until someone owns it: a bounded wait, then it claims the lane
// as usual. Idle workers spin for spin_us, then park: an idle worker burns no core.
//
// Memory ordering: every change of a lane's LaneSchedule word is a
// read-modify-write (acq_rel), also a producer's mark after its push when the
// lane is already scheduled (it writes back what it read), so the changes of
// one lane form one total order, each reading the one before. A producer
// pushes, then marks; an owner gives the lane up, then reads the queue sizes.
// If the owner's release follows the mark, it synchronises with it and sees
// the request (and reschedules unless a ring entry is left, whose worker will
// serve it); if the mark follows the release, the producer reads the word the
// release wrote: idle, and it puts the id in the ring itself; an entry, whose
// worker serves the request; or a new owner, whose own release then follows
// the mark (the first case). A request is never left in an unscheduled lane.
// The kInRing bit is set only by whoever pushes the id and cleared only by the
// worker that pops it, so a lane is in the ring at most once (the ring holds
// max_lanes ids: a push into it never fails). Callers and shutdown: a caller
// counts itself in callers_serving, then checks stopping (both seq_cst); a
// worker exits only after it read stopping, then no caller serving, then an
// empty ring (seq_cst): either the caller sees stopping and serves nothing, or
// the workers stay until it has given its lane up (and rescheduled what is
// left). close() and retire() wait for in-progress pushes through the seq_cst
// counter pushers_ (checked against the seq_cst closed flags).
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
//   (model replicas) at once; spin_us: how long an idle worker spins before parking;
//   caller_runs: 1 lets a thread waiting for its request serve the request's
//   lane itself when no one is serving it (run_as_caller), 0 leaves every
//   batch to the workers.
#define FASTROUTE_DISPATCH_SETTINGS(X)                  \
  X(threads, std::size_t, 2, 1, 1024)                   \
  X(max_batch, std::size_t, 32, 1, 1 << 20)             \
  X(max_delay_us, std::int64_t, 200, 0, 60'000'000)     \
  X(queue_capacity, std::size_t, 4096, 1, 1 << 24)      \
  X(max_lanes, std::size_t, 1024, 1, 1 << 16)           \
  X(spin_us, std::int64_t, 20, 0, 1'000'000)            \
  X(caller_runs, std::int64_t, 1, 0, 1)

// How long after a lane's latest push a worker leaves the lane to a caller
// about to serve it (see Dispatcher's leave_to_caller): about the time a
// submitter takes from its push to result() on the router's native path.
inline constexpr std::int64_t kCallerGraceNs = 5'000;

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

// The batches one lane owner hands to the sink in one call: the first one,
// then (through next(), on a worker) any further batches already queued on
// the same lane, so a sink with a fixed cost per call (taking the GIL) pays it
// once for all of them. Used only by the thread the sink runs on.
class BatchStream {
 public:
  Batch& batch() noexcept { return batch_; }
  // True when a caller runs this batch on its own thread (run_as_caller):
  // the sink runs where the caller waited (a Python caller holds the GIL).
  bool by_caller() const noexcept { return by_caller_; }
  // Marks the current batch done and takes the next one from the lane without
  // waiting. False (and an empty batch) when the lane has nothing queued,
  // after kMaxBatchesPerCall batches, so other lanes get their turn, and
  // always for a caller's stream (one batch: a caller serves its own request).
  bool next();
  // How many requests of the current batch failed (the sink's verdict; the
  // dispatcher cannot tell). Recorded with the batch's service time.
  void report_failures(std::size_t failures) noexcept { failures_ = failures; }

  static constexpr int kMaxBatchesPerCall = 16;

 private:
  friend class Dispatcher;
  BatchStream(Lane& lane, const BatchLimits& limits, Batch& batch, bool by_caller)
      : lane_(lane), limits_(limits), batch_(batch), started_ns_(now_ns()), by_caller_(by_caller) {}
  void finish_current() noexcept;

  Lane& lane_;
  const BatchLimits& limits_;
  Batch& batch_;
  int batches_ = 1;
  std::int64_t started_ns_;   // when the sink got the current batch
  std::size_t failures_ = 0;  // reported for the current batch
  const bool by_caller_;
};

// Receives every accepted payload exactly once, grouped by lane. Called from
// worker threads and from callers in run_as_caller (never concurrently for
// one lane) and must not throw.
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

  // Thread-safe; blocks for as long as the sink runs; allocates only as a
  // worker's batch does. "Caller runs": the calling thread serves `lane` as a
  // worker would (one batch, high priority first, deadlines and aborts sorted
  // out, stage histograms and service times recorded, sink called here), then
  // gives the lane up and reschedules it if requests remain. Meant for a
  // thread about to wait for a request it queued on `lane`. Returns false,
  // having done nothing, when caller_runs is 0, on any dispatcher's worker
  // thread or inside any sink (a nested wait), once close() began, when
  // nothing is queued, when a worker or another caller owns the lane, and
  // for a lane that fills batches (add_lane) unless a full max_batch is
  // queued: taking a filling lane early would run small batches and defeat
  // micro-batching. Throws InvalidInput for an unknown lane.
  bool run_as_caller(std::size_t lane);

  // Thread-safe, non-blocking: true on one of this dispatcher's worker
  // threads, and on a caller's thread while it runs this dispatcher's sink
  // (inside a model or a done-callback either way).
  bool on_worker_thread() const noexcept;

 private:
  struct Core;
  std::shared_ptr<Core> core_;
  std::mutex close_mu_;                // serialises joining and detaching the workers
  std::vector<std::thread> workers_;   // guarded by close_mu_
};

}  // namespace fastroute
