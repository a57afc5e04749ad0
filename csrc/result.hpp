// ResultSlot: the outcome state of one request, settled exactly once, and a
// wait for it that spins briefly before parking (the spin is what makes a
// submit-then-wait round trip cheap: a worker that answers within it wakes
// nobody). The outcome itself (a value, an error) is the owner's: the slot
// only orders its writes before the state that publishes them.
//
// Memory ordering: every transition is one compare-exchange on state_
// (acq_rel). A settler first claims the slot (pending or running ->
// settling), writes the outcome, then publishes it with a release store of
// the final state and notifies the Parker (see parker.hpp: no lost wake-up).
// A reader that loads a final state (acquire) sees the outcome written before
// it. kSettling is not done: waiters keep waiting through it, cancel() fails.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "parker.hpp"

namespace fastroute {

enum class ResultState : std::uint8_t { kPending, kRunning, kSettling, kSucceeded, kFailed, kCancelled };

enum class StartOutcome : std::uint8_t {
  kStarted,    // was pending: now running
  kCancelled,  // was cancelled: stays so, must not run
  kNotPending  // running, settling or settled already: a caller's mistake
};

// How long a waiter spins before it parks, unless told otherwise.
inline constexpr std::int64_t kDefaultResultSpinNs = 50'000;

class ResultSlot {
 public:
  ResultSlot() = default;
  ResultSlot(const ResultSlot&) = delete;
  ResultSlot& operator=(const ResultSlot&) = delete;

  // Thread-safe, non-blocking, never allocates.
  ResultState state() const noexcept { return state_.load(std::memory_order_acquire); }
  bool done() const noexcept;

  // Thread-safe, non-blocking: pending -> running (the request's work begins).
  StartOutcome start() noexcept;

  // Thread-safe, non-blocking: pending -> cancelled, waking every waiter.
  // True if cancelled now or before; false once running or settled.
  bool cancel();

  // Thread-safe, non-blocking apart from `write`: pending or running ->
  // succeeded (ok) or failed, with write() run in between to store the
  // outcome; wakes every waiter. False (write not called) when already
  // settling, settled or cancelled.
  template <typename Write>
  bool settle(bool ok, Write&& write) {
    ResultState seen = state_.load(std::memory_order_acquire);
    do {
      if (seen != ResultState::kPending && seen != ResultState::kRunning) return false;
    } while (!state_.compare_exchange_weak(seen, ResultState::kSettling, std::memory_order_acq_rel));
    std::forward<Write>(write)();
    state_.store(ok ? ResultState::kSucceeded : ResultState::kFailed, std::memory_order_release);
    parker_.notify_all();
    return true;
  }

  // Thread-safe, blocking: until done() or deadline_ns (kNoDeadline: none),
  // spinning for spin_ns first. True once done. Never allocates.
  bool wait_until(std::int64_t deadline_ns, std::int64_t spin_ns);

 private:
  std::atomic<ResultState> state_{ResultState::kPending};
  Parker parker_;
};

// How many threads are in some state (waiting for a result without the GIL,
// holding the GIL for a batch), for another thread to spin on briefly instead
// of sleeping: a hand-off where neither side sleeps needs no wake-up, which
// costs tens of microseconds on a busy or virtualised machine. Thread-safe,
// never blocks beyond its spin, never allocates.
class PresenceCount {
 public:
  void enter() noexcept { count_.fetch_add(1, std::memory_order_acq_rel); }
  void leave() noexcept { count_.fetch_sub(1, std::memory_order_acq_rel); }
  bool any() const noexcept { return count_.load(std::memory_order_acquire) > 0; }
  // Spins (pausing, then yielding) until any() == wanted or spin_ns passed; returns whether it did.
  bool spin_until(bool wanted, std::int64_t spin_ns) const;

  // Entered for the lifetime of the scope (from mark() on).
  class Scope {
   public:
    explicit Scope(PresenceCount& count) noexcept : count_(count) {}
    ~Scope() {
      if (entered_) count_.leave();
    }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;
    void mark() noexcept {
      count_.enter();
      entered_ = true;
    }

   private:
    PresenceCount& count_;
    bool entered_ = false;
  };

 private:
  std::atomic<int> count_{0};
};

// What one worker completed in one batch, grouped by an opaque key (the
// event loop waiting for each item), keys in first-seen order: the caller
// then makes one hand-off per key, not one per item. Not thread-safe (one
// worker's); add() allocates as groups grow.
template <typename Key, typename Item>
class GroupsByKey {
 public:
  struct Group {
    Key key;
    std::vector<Item> items;
  };

  void add(Key key, Item item) {
    for (auto& group : groups_) {  // linear: a batch waits on a handful of loops at most
      if (group.key == key) {
        group.items.push_back(std::move(item));
        return;
      }
    }
    groups_.push_back(Group{std::move(key), {}});
    groups_.back().items.push_back(std::move(item));
  }
  bool empty() const noexcept { return groups_.empty(); }
  // Hands the groups over and starts empty again.
  std::vector<Group> take() noexcept { return std::exchange(groups_, {}); }

 private:
  std::vector<Group> groups_;
};

}  // namespace fastroute
