// ResultSlot: settled exactly once whoever races (start, cancel, settle from
// many threads), every waiter wakes (spinning or parked), timed waits time
// out, and the outcome written before publishing is what waiters read.
// PresenceCount: spins until a presence appears or goes.
// GroupsByKey: groups by key in first-seen order, no element lost or copied.
#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "check.hpp"
#include "result.hpp"

using namespace fastroute;

namespace {

void transitions_follow_the_future_contract() {
  ResultSlot slot;
  CHECK(slot.state() == ResultState::kPending && !slot.done());
  CHECK(slot.start() == StartOutcome::kStarted);
  CHECK(slot.start() == StartOutcome::kNotPending);
  CHECK(!slot.cancel());  // running: too late
  int value = 0;
  CHECK(slot.settle(true, [&] { value = 7; }));
  CHECK(slot.state() == ResultState::kSucceeded && slot.done() && value == 7);
  CHECK(!slot.settle(false, [&] { value = 9; }));  // settled once only
  CHECK(value == 7);
  CHECK(slot.wait_until(kNoDeadline, 0));

  ResultSlot cancelled;
  CHECK(cancelled.cancel() && cancelled.cancel());  // idempotent
  CHECK(cancelled.start() == StartOutcome::kCancelled);
  CHECK(!cancelled.settle(true, [] {}));
  CHECK(cancelled.state() == ResultState::kCancelled && cancelled.done());

  ResultSlot failed;  // settled straight from pending (a request failed before it ran)
  CHECK(failed.settle(false, [] {}));
  CHECK(failed.state() == ResultState::kFailed && !failed.cancel());
}

void timed_wait_times_out() {
  ResultSlot slot;
  const std::int64_t start = now_ns();
  CHECK(!slot.wait_until(start + 2'000'000, 100'000));  // 2 ms, spinning the first 0.1
  CHECK(now_ns() - start >= 2'000'000);
  CHECK(!slot.done());
}

// One slot per round; start, cancel and settle race from their own threads:
// exactly one of cancel/settle wins, and start agrees with it.
void racing_transitions_end_once() {
  constexpr int kRounds = 300;
  for (int round = 0; round < kRounds; ++round) {
    ResultSlot slot;
    std::atomic<int> writes{0};
    std::atomic<bool> cancelled{false}, started{false};
    std::atomic<bool> go{false};
    std::thread canceller([&] {
      while (!go.load()) std::this_thread::yield();
      cancelled = slot.cancel();
    });
    std::thread starter([&] {
      while (!go.load()) std::this_thread::yield();
      started = slot.start() == StartOutcome::kStarted;
    });
    std::vector<std::thread> settlers;
    for (int i = 0; i < 2; ++i) {
      settlers.emplace_back([&, i] {
        while (!go.load()) std::this_thread::yield();
        slot.settle(i == 0, [&] { ++writes; });
      });
    }
    go = true;
    canceller.join();
    starter.join();
    for (auto& t : settlers) t.join();
    CHECK(slot.done());
    CHECK(cancelled.load() != (writes.load() == 1));
    CHECK(writes.load() <= 1);
    CHECK(!(started.load() && cancelled.load()));
    CHECK((slot.state() == ResultState::kCancelled) == cancelled.load());
  }
}

// Many slots, settled by one producer with values; waiter threads (some
// parking at once, some spinning long) read each value after its wait.
void waiters_read_what_the_settler_wrote() {
  constexpr int kSlots = 2000;
  constexpr int kWaiters = 4;
  std::vector<std::unique_ptr<ResultSlot>> slots;
  std::vector<std::int64_t> values(kSlots, 0);
  for (int i = 0; i < kSlots; ++i) slots.push_back(std::make_unique<ResultSlot>());
  std::atomic<std::int64_t> sum{0};
  std::vector<std::thread> waiters;
  for (int w = 0; w < kWaiters; ++w) {
    waiters.emplace_back([&, w] {
      const std::int64_t spin_ns = w % 2 == 0 ? 0 : 50'000;
      for (int i = w; i < kSlots; i += kWaiters) {
        CHECK(slots[i]->wait_until(kNoDeadline, spin_ns));
        CHECK(slots[i]->state() == ResultState::kSucceeded);
        sum += values[i];
      }
    });
  }
  std::thread producer([&] {
    for (int i = 0; i < kSlots; ++i) {
      CHECK(slots[i]->start() == StartOutcome::kStarted);
      CHECK(slots[i]->settle(true, [&] { values[i] = i + 1; }));
      if (i % 64 == 0) std::this_thread::sleep_for(std::chrono::microseconds(100));  // let waiters park
    }
  });
  producer.join();
  for (auto& t : waiters) t.join();
  CHECK(sum.load() == static_cast<std::int64_t>(kSlots) * (kSlots + 1) / 2);
}

void many_waiters_on_one_slot_all_wake() {
  ResultSlot slot;
  std::atomic<int> woke{0};
  std::vector<std::thread> waiters;
  for (int w = 0; w < 6; ++w) {
    waiters.emplace_back([&] {
      if (slot.wait_until(kNoDeadline, 1'000)) ++woke;
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(5));  // parked by now
  CHECK(slot.cancel());
  for (auto& t : waiters) t.join();
  CHECK(woke.load() == 6);
}

// Counts live instances, so a lost or duplicated element shows.
struct Counted {
  static inline std::atomic<int> live{0};
  int id;
  explicit Counted(int i) : id(i) { ++live; }
  Counted(const Counted& other) : id(other.id) { ++live; }
  Counted(Counted&& other) noexcept : id(other.id) { ++live; }
  Counted& operator=(const Counted&) = default;
  Counted& operator=(Counted&&) noexcept = default;
  ~Counted() { --live; }
};

// One thread spins for another's presence, then for its absence.
void presence_count_spins_for_a_change() {
  PresenceCount count;
  CHECK(!count.any());
  CHECK(!count.spin_until(true, 1'000'000));  // nobody comes within 1 ms
  CHECK(count.spin_until(false, 0));
  std::atomic<bool> release{false};
  std::thread present([&] {
    PresenceCount::Scope scope(count);
    scope.mark();
    while (!release.load()) std::this_thread::yield();
  });
  CHECK(count.spin_until(true, 10'000'000'000));
  release = true;
  CHECK(count.spin_until(false, 10'000'000'000));
  present.join();
  {
    PresenceCount::Scope unmarked(count);  // never marked: leaves nothing
  }
  CHECK(!count.any());
}

void groups_by_key_in_first_seen_order() {
  {
    GroupsByKey<int, Counted> groups;
    CHECK(groups.empty());
    const int keys[] = {3, 1, 3, 2, 1, 3};
    for (int i = 0; i < 6; ++i) groups.add(keys[i], Counted(i));
    CHECK(Counted::live.load() == 6);
    auto taken = groups.take();
    CHECK(groups.empty());
    CHECK(taken.size() == 3);
    CHECK(taken[0].key == 3 && taken[1].key == 1 && taken[2].key == 2);
    CHECK(taken[0].items.size() == 3 && taken[0].items[0].id == 0 && taken[0].items[2].id == 5);
    CHECK(taken[1].items.size() == 2 && taken[1].items[1].id == 4);
    CHECK(taken[2].items.size() == 1 && taken[2].items[0].id == 3);
    CHECK(Counted::live.load() == 6);
  }
  CHECK(Counted::live.load() == 0);
}

}  // namespace

int main() {
  RUN(transitions_follow_the_future_contract);
  RUN(timed_wait_times_out);
  RUN(racing_transitions_end_once);
  RUN(waiters_read_what_the_settler_wrote);
  RUN(many_waiters_on_one_slot_all_wake);
  RUN(presence_count_spins_for_a_change);
  RUN(groups_by_key_in_first_seen_order);
  return TEST_MAIN_RESULT();
}
