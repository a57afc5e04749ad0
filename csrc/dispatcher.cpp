#include "dispatcher.hpp"

#include <algorithm>
#include <mutex>
#include <string>

#include "errors.hpp"

namespace fastroute {

struct Dispatcher::Core {
  Core(const DispatchConfig& config, BatchSink batch_sink)
      : limits{config.max_batch, config.max_delay_us * 1000, config.spin_us * 1000},
        queue_capacity(config.queue_capacity),
        max_lanes(config.max_lanes),
        caller_runs(config.caller_runs != 0),
        sink(std::move(batch_sink)),
        lanes(std::make_unique<std::unique_ptr<Lane>[]>(config.max_lanes)),
        lane_free(config.max_lanes, false),
        ready(config.max_lanes) {}

  Lane& lane(std::size_t id) const {
    if (id >= lane_count.load(std::memory_order_acquire)) {
      throw InvalidInput("unknown lane " + std::to_string(id));
    }
    return *lanes[id];
  }

  // A producer that finds the lane idle schedules it; otherwise the worker
  // owning it may be waiting for more requests to fill a batch.
  void schedule(std::size_t id, Lane& lane) {
    if (!lane.schedule.mark_arrival()) {
      lane.arrivals.notify_one();
      return;
    }
    ready.try_push(id);  // cannot fail: each lane is in the ring at most once
    idle.notify_one();
  }

  PushStatus try_push(std::size_t id, const Request& request, Priority priority) {
    Lane& target = lane(id);
    pushers.fetch_add(1, std::memory_order_seq_cst);
    PushStatus status = PushStatus::kClosed;
    if (!closed.load(std::memory_order_seq_cst) && !target.closed.load(std::memory_order_seq_cst)) {
      status = target.queues[static_cast<std::size_t>(priority)].try_push(request) ? PushStatus::kAccepted
                                                                                  : PushStatus::kFull;
      if (status == PushStatus::kAccepted) {
        target.last_push_ns.store(request.enqueued_ns, std::memory_order_relaxed);
        schedule(id, target);
      }
    }
    pushers.fetch_sub(1, std::memory_order_seq_cst);
    return status;
  }

  void wait_for_pushers() const {
    while (pushers.load(std::memory_order_seq_cst) != 0) std::this_thread::yield();
  }

  // Rejects new requests, marks every lane aborting unless drain (also when
  // already closed: a close without drain after one with drain aborts what is
  // left), tells the workers to exit once the ready ring is empty, and wakes
  // everyone waiting on a lane: batchers, push_wait() callers, retire().
  void begin_close(bool drain) {
    std::size_t count;
    {
      std::lock_guard lock(lanes_mu);  // no lane is added meanwhile, nor after: add_lane() checks closed
      count = lane_count.load(std::memory_order_acquire);
      for (std::size_t i = 0; i < count; ++i) {  // before closed, as in retire()
        if (!drain) lanes[i]->aborting.store(true, std::memory_order_seq_cst);
        lanes[i]->closed.store(true, std::memory_order_seq_cst);  // a filling batch stops waiting
      }
      closed.store(true, std::memory_order_seq_cst);
    }
    wait_for_pushers();
    stopping.store(true, std::memory_order_seq_cst);
    idle.notify_all();
    for (std::size_t i = 0; i < count; ++i) {
      lanes[i]->arrivals.notify_all();
      lanes[i]->progress.notify_all();
    }
  }

  // True once every worker has left work(), or false after timeout_ns.
  bool wait_for_workers(std::int64_t timeout_ns) {
    std::unique_lock lock(exit_mu);
    const auto all_exited = [&] { return running_workers == 0; };
    if (timeout_ns >= kNoDeadline - now_ns()) {
      exited.wait(lock, all_exited);
      return true;
    }
    return exited.wait_for(lock, std::chrono::nanoseconds(timeout_ns), all_exited);
  }

  // Once stopping, nothing new can be queued (see close); what a caller still
  // serving leaves queued, it reschedules, so workers stay until no caller is.
  bool may_exit() const {
    return stopping.load(std::memory_order_seq_cst) && callers_serving.load(std::memory_order_seq_cst) == 0;
  }

  void work() {
    serving_for = this;
    Batch batch;
    const auto has_work = [&] { return !ready.empty() || may_exit(); };
    for (;;) {
      std::size_t id;
      if (ready.try_pop(id)) {
        leave_to_caller(*lanes[id]);
        if (lanes[id]->schedule.claim_from_ring()) serve(id, *lanes[id], batch, /*by_caller=*/false);
      } else if (may_exit()) {
        if (ready.empty()) break;  // a caller's reschedule came before its leaving: serve it first
      } else {
        idle.wait_until(has_work, kNoDeadline, limits.spin_ns);
      }
    }
    std::lock_guard lock(exit_mu);
    --running_workers;
    exited.notify_all();
  }

  // One batch from the lane its owner (this thread) serves, then the owner
  // gives the lane up, and the lane goes back to the ready ring if it still
  // holds requests, behind the other lanes waiting there. A caller never
  // waits for a batch to fill.
  void serve(std::size_t id, Lane& lane, Batch& batch, bool by_caller) {
    batch.clear();
    batch.lane = id;
    if (collect_batch(lane, limits, batch, /*wait=*/!by_caller)) {
      BatchStream stream(lane, limits, batch, by_caller);
      sink(stream);
      stream.finish_current();
    }
    if (lane.schedule.release() && lane.queued() > 0 && lane.schedule.mark_arrival()) {
      ready.try_push(id);
      if (by_caller) idle.notify_one();  // a worker pops it next anyway
    }
    lane.progress.notify_all();
  }

  // A request pushed moments ago is most likely about to be waited for by
  // its submitter, who then serves it with no thread or GIL hand-off (caller
  // runs). A worker that races it there wins on an idle machine (it spins
  // while the submitter is still returning to Python) and costs the hand-offs
  // caller runs avoids (measured: 38 us instead of 11 us per router round
  // trip). So a worker gives a lane callers may serve kCallerGraceNs after
  // its latest push, or until someone owns it, before claiming it itself.
  void leave_to_caller(const Lane& lane) const {
    if (!caller_runs || lane.fill_batches.load(std::memory_order_relaxed)) return;
    const std::int64_t until = lane.last_push_ns.load(std::memory_order_relaxed) + kCallerGraceNs;
    spin_until([&] { return lane.schedule.owned() || stopping.load(std::memory_order_relaxed); }, until);
  }

  bool run_as_caller(std::size_t id) {
    if (!caller_runs || serving_for != nullptr) return false;
    Lane& target = lane(id);
    const std::size_t queued = target.queued();
    if (queued == 0 || (target.fill_batches.load(std::memory_order_relaxed) && queued < limits.max_batch)) {
      return false;
    }
    callers_serving.fetch_add(1, std::memory_order_seq_cst);
    const bool owns = !stopping.load(std::memory_order_seq_cst) && target.schedule.claim_by_caller();
    if (owns) {
      serving_for = this;
      thread_local Batch batch;  // one caller run per thread at a time (nested ones are refused)
      serve(id, target, batch, /*by_caller=*/true);
      serving_for = nullptr;
    }
    callers_serving.fetch_sub(1, std::memory_order_seq_cst);
    if (stopping.load(std::memory_order_seq_cst)) idle.notify_all();  // a worker waiting to exit
    return owns;
  }

  const BatchLimits limits;
  const std::size_t queue_capacity;
  const std::size_t max_lanes;
  const bool caller_runs;
  const BatchSink sink;

  std::mutex lanes_mu;  // serialises add_lane and the freeing of retired lanes
  const std::unique_ptr<std::unique_ptr<Lane>[]> lanes;  // slot i written once, before lane_count > i
  std::atomic<std::size_t> lane_count{0};
  std::vector<std::size_t> free_lanes;  // retired and drained, closed until reopened; guarded by lanes_mu
  std::vector<bool> lane_free;          // by id: in free_lanes; guarded by lanes_mu
  MpmcQueue<std::size_t> ready;  // ids of scheduled lanes not owned by a worker
  Parker idle;                   // workers with nothing to do

  std::atomic<bool> closed{false};    // rejects new requests
  std::atomic<bool> stopping{false};  // workers exit once the ready ring is empty
  std::atomic<int> pushers{0};        // try_push calls in progress
  std::atomic<int> callers_serving{0};  // run_as_caller calls past their first checks

  std::mutex exit_mu;
  std::condition_variable exited;
  std::size_t running_workers = 0;  // guarded by exit_mu

  // The Core whose work() runs on this thread, or whose sink a caller runs
  // here now, if any (see on_worker_thread, run_as_caller).
  static thread_local const Core* serving_for;
};

thread_local const Dispatcher::Core* Dispatcher::Core::serving_for = nullptr;

void BatchStream::finish_current() noexcept {
  const std::int64_t now = now_ns();
  lane_.service.record_batch(now - started_ns_, batch_.ready.size(), failures_, now);
  if (!batch_.ready.empty()) lane_.stages.execute.record(now - started_ns_);
  failures_ = 0;
  lane_.in_flight.fetch_sub(static_cast<std::int64_t>(batch_.size()), std::memory_order_release);
  const std::size_t lane = batch_.lane;
  batch_.clear();
  batch_.lane = lane;
}

bool BatchStream::next() {
  finish_current();
  if (by_caller_ || batches_ >= kMaxBatchesPerCall) return false;
  ++batches_;
  const bool more = collect_batch(lane_, limits_, batch_, /*wait=*/false);
  started_ns_ = now_ns();
  return more;
}

namespace {

void validate(const DispatchConfig& c) {
#define FASTROUTE_CHECK_SETTING(name, type, fallback, lowest, highest)                                      \
  if (!(c.name >= (lowest) && c.name <= static_cast<type>(highest))) {                                      \
    throw InvalidInput("invalid dispatcher config: " #name "=" + std::to_string(c.name) + " (" +          \
                       std::to_string(lowest) + ".." + std::to_string(highest) + ")");                     \
  }
  FASTROUTE_DISPATCH_SETTINGS(FASTROUTE_CHECK_SETTING)
#undef FASTROUTE_CHECK_SETTING
}

}  // namespace

Dispatcher::Dispatcher(const DispatchConfig& config, BatchSink sink) {
  validate(config);
  core_ = std::make_shared<Core>(config, std::move(sink));
  core_->running_workers = config.threads;
  workers_.reserve(config.threads);
  for (std::size_t i = 0; i < config.threads; ++i) {
    workers_.emplace_back([core = core_] { core->work(); });
  }
}

// Waits only for workers still attached: those a timed-out close() detached
// finish on their own.
Dispatcher::~Dispatcher() { close(false, workers_.empty() ? 0 : kNoDeadline); }

std::size_t Dispatcher::add_lane(bool fill_batches) {
  std::lock_guard lock(core_->lanes_mu);
  if (core_->closed.load()) throw Closed("the dispatcher is closed");
  if (!core_->free_lanes.empty()) {
    const std::size_t id = core_->free_lanes.back();
    core_->free_lanes.pop_back();
    core_->lane_free[id] = false;
    // Drained: nothing is queued. A worker may still pop an id a caller's run
    // left in the ring; it then finds nothing, or this lane's new requests.
    Lane& lane = *core_->lanes[id];
    lane.service.reset();
    lane.stages.reset();
    lane.fill_batches.store(fill_batches, std::memory_order_relaxed);
    lane.aborting.store(false, std::memory_order_seq_cst);
    lane.closed.store(false, std::memory_order_seq_cst);
    return id;
  }
  const std::size_t id = core_->lane_count.load(std::memory_order_relaxed);
  if (id >= core_->max_lanes) {
    throw Exhausted("all " + std::to_string(core_->max_lanes) + " lanes (max_lanes) are in use");
  }
  core_->lanes[id] = std::make_unique<Lane>(core_->queue_capacity);
  core_->lanes[id]->fill_batches.store(fill_batches, std::memory_order_relaxed);  // published by lane_count
  core_->lane_count.store(id + 1, std::memory_order_release);
  return id;
}

PushStatus Dispatcher::try_push(std::size_t lane, Payload payload, Priority priority, std::int64_t deadline_ns) {
  return core_->try_push(lane, Request{payload, now_ns(), deadline_ns}, priority);
}

PushStatus Dispatcher::push_wait(std::size_t lane, Payload payload, Priority priority, std::int64_t deadline_ns,
                                 std::int64_t timeout_ns) {
  const std::int64_t give_up = timeout_ns >= kNoDeadline - now_ns() ? kNoDeadline : now_ns() + timeout_ns;
  Lane& target = core_->lane(lane);
  const auto& ring = target.queues[static_cast<std::size_t>(priority)];
  const auto has_room = [&] {
    return ring.size() < ring.capacity() || target.closed.load() || core_->closed.load();
  };
  for (;;) {
    const PushStatus status = try_push(lane, payload, priority, deadline_ns);
    if (status != PushStatus::kFull) return status;
    if (!target.progress.wait_until(has_room, give_up, core_->limits.spin_ns)) return PushStatus::kFull;
  }
}

LaneStats Dispatcher::stats(std::size_t lane) const {
  const Lane& target = core_->lane(lane);
  return {target.queued(), std::max<std::int64_t>(0, target.in_flight.load(std::memory_order_acquire)),
          target.closed.load(), target.queues[static_cast<std::size_t>(Priority::kHigh)].size(),
          target.service.snapshot()};
}

double Dispatcher::expected_ns(std::size_t lane, Priority priority) const {
  const Lane& target = core_->lane(lane);
  std::size_t ahead = target.queues[static_cast<std::size_t>(Priority::kHigh)].size();
  if (priority == Priority::kNormal) ahead += target.queues[static_cast<std::size_t>(Priority::kNormal)].size();
  ahead += static_cast<std::size_t>(std::max<std::int64_t>(0, target.in_flight.load(std::memory_order_acquire)));
  const double per_request = ahead == 0 ? target.service.fresh_request_ns(now_ns()) : target.service.request_ns();
  return static_cast<double>(ahead + 1) * per_request;
}

Dispatcher::ModelLoad Dispatcher::model_load(std::span<const std::size_t> lanes, Priority priority) const {
  ModelLoad load;
  for (std::size_t i = 0; i < lanes.size(); ++i) {
    const double expected = expected_ns(lanes[i], priority);
    const double per_request = core_->lane(lanes[i]).service.fresh_request_ns(now_ns());
    load.expected_ns = i == 0 ? expected : std::min(load.expected_ns, expected);
    load.request_ns = i == 0 ? per_request : std::min(load.request_ns, per_request);
  }
  return load;
}

LaneStagesSnapshot Dispatcher::stages(std::size_t lane) const { return snapshot(core_->lane(lane).stages); }

std::size_t Dispatcher::lane_count() const { return core_->lane_count.load(std::memory_order_acquire); }

bool Dispatcher::closed() const noexcept { return core_->closed.load(std::memory_order_seq_cst); }

void Dispatcher::retire(std::size_t lane, bool drain) {
  Lane& target = core_->lane(lane);
  // Aborting first: once closed is visible, so is aborting. A push racing
  // with this is then accepted and aborted, never run.
  if (!drain) target.aborting.store(true, std::memory_order_seq_cst);
  target.closed.store(true, std::memory_order_seq_cst);
  target.arrivals.notify_all();
  target.progress.notify_all();  // push_wait() callers: refused now
  core_->wait_for_pushers();
  const auto drained = [&] {
    return target.queued() == 0 && !target.schedule.owned() &&
           target.in_flight.load(std::memory_order_acquire) == 0;
  };
  target.progress.wait_until(drained, kNoDeadline, core_->limits.spin_ns);
  std::lock_guard lock(core_->lanes_mu);
  if (!core_->lane_free[lane]) {  // a second retire() of the lane frees nothing more
    core_->lane_free[lane] = true;
    core_->free_lanes.push_back(lane);
  }
}

void Dispatcher::begin_close(bool drain) { core_->begin_close(drain); }

bool Dispatcher::run_as_caller(std::size_t lane) { return core_->run_as_caller(lane); }

bool Dispatcher::on_worker_thread() const noexcept { return Core::serving_for == core_.get(); }

bool Dispatcher::close(bool drain, std::int64_t timeout_ns) {
  core_->begin_close(drain);
  // Waiting holds no lock, so concurrent and later close() calls never queue
  // behind one that waits for a hung sink.
  const bool finished = core_->wait_for_workers(on_worker_thread() ? 0 : timeout_ns);
  std::lock_guard close_lock(close_mu_);
  for (auto& worker : workers_) {
    if (finished) {
      worker.join();  // it has left work(): returns at once
    } else {
      worker.detach();  // still inside the sink (or this very thread); owns a reference to core_
    }
  }
  workers_.clear();
  return finished;
}

}  // namespace fastroute
