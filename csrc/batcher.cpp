#include "batcher.hpp"

namespace fastroute {
namespace {

bool pop_next(Lane& lane, Request& out) noexcept {
  for (auto& queue : lane.queues) {
    if (queue.try_pop(out)) return true;
  }
  return false;
}

void sort_into(Lane& lane, const Request& request, std::int64_t now, Batch& batch) {
  lane.stages.queue_wait.record(now - request.enqueued_ns);
  if (lane.aborting.load(std::memory_order_acquire)) {
    batch.aborted.push_back(request.payload);
  } else if (request.deadline_ns <= now) {
    batch.expired.push_back(request.payload);
  } else {
    batch.ready.push_back(request.payload);
  }
}

}  // namespace

bool collect_batch(Lane& lane, const BatchLimits& limits, Batch& batch, bool wait) {
  Request request;
  if (!pop_next(lane, request)) return false;
  const std::int64_t send_by = request.enqueued_ns + limits.max_delay_ns;
  const std::int64_t opened = now_ns();
  const bool fill = wait && lane.fill_batches.load(std::memory_order_relaxed);
  sort_into(lane, request, opened, batch);
  // A closed lane (retired, or its dispatcher closing) gets no more requests: waiting
  // for its batch to fill would only delay the drain by up to max_delay.
  const auto closing = [&] {
    return lane.aborting.load(std::memory_order_acquire) || lane.closed.load(std::memory_order_acquire);
  };
  const auto more = [&] { return lane.queued() > 0 || closing(); };
  while (batch.ready.size() < limits.max_batch) {
    if (pop_next(lane, request)) {
      sort_into(lane, request, now_ns(), batch);
      continue;
    }
    if (!fill || now_ns() >= send_by || closing()) break;
    if (!lane.arrivals.wait_until(more, send_by, limits.spin_ns)) break;
  }
  lane.stages.batch_wait.record(now_ns() - opened);
  if (!batch.ready.empty()) lane.stages.batch_size.record(static_cast<std::int64_t>(batch.ready.size()));
  // Counted before the sink runs; the dispatcher subtracts after it returns.
  lane.in_flight.fetch_add(static_cast<std::int64_t>(batch.size()), std::memory_order_relaxed);
  return true;
}

}  // namespace fastroute
