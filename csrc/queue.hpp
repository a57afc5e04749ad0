// A bounded lock-free multi-producer multi-consumer FIFO queue (a ring of
// slots, each with a turn counter, after Dmitry Vyukov's bounded MPMC queue
// and rigtorp/MPMCQueue).
//
// Memory ordering: a producer reads head_, checks that the ticket's slot has
// turn == 2*round (acquire: the previous consumer has finished destroying the
// old element), claims the ticket with a CAS on head_, constructs the
// element in place, then stores turn = 2*round+1 with release. A consumer
// mirrors this: it checks for turn 2*round+1 (acquire: the element
// is fully constructed), moves it out, destroys it, then stores turn =
// 2*round+2 (release). The slot's turn is the only synchronisation between a
// producer and a consumer; head_ and tail_ only hand out tickets. Every slot
// and both indices sit on their own cache lines, so producers and consumers
// do not false-share.
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

namespace fastroute {

inline constexpr std::size_t kCacheLine = 64;

template <typename T>
class MpmcQueue {
  static_assert(std::is_nothrow_destructible_v<T>, "T must be nothrow destructible");
  static_assert(std::is_nothrow_move_constructible_v<T> && std::is_nothrow_move_assignable_v<T>,
                "T must move without throwing: a claimed ticket cannot be given back");

 public:
  // Allocates the slots once: `capacity` rounded up to a power of two (so a
  // ticket maps to its slot with a mask). Throws std::invalid_argument if
  // capacity is 0 or above 2^32.
  explicit MpmcQueue(std::size_t capacity)
      : capacity_(round_up_pow2(capacity)),
        shift_(static_cast<unsigned>(std::countr_zero(capacity_))),
        slots_(std::make_unique<Slot[]>(capacity_)) {
    // Layout invariants (as rigtorp/MPMCQueue states them): the object spans at
    // least three cache lines (the constant fields, head_, tail_), head_ and
    // tail_ each own a whole line, so a neighbour object never shares theirs.
    static_assert(alignof(MpmcQueue) == kCacheLine, "the queue must be cache-line aligned");
    static_assert(sizeof(MpmcQueue) >= 3 * kCacheLine, "the queue must span three cache lines");
    static_assert(sizeof(Index) == kCacheLine && alignof(Index) == kCacheLine,
                  "head_ and tail_ must each own one whole cache line (one line apart)");
  }

  // Not thread-safe: destroys the elements still queued.
  ~MpmcQueue() {
    for (std::size_t i = 0; i < capacity_; ++i) {
      Slot& slot = slots_[i];
      if (slot.turn.load(std::memory_order_relaxed) & 1) slot.destroy();
    }
  }

  MpmcQueue(const MpmcQueue&) = delete;
  MpmcQueue& operator=(const MpmcQueue&) = delete;

  // Thread-safe, non-blocking, never allocates. Returns false (and leaves
  // the arguments untouched) when the queue is full.
  template <typename... Args>
  bool try_emplace(Args&&... args) noexcept {
    static_assert(std::is_nothrow_constructible_v<T, Args&&...>,
                  "the element is built after its ticket is claimed: construction must not throw");
    std::size_t head = head_.next.load(std::memory_order_acquire);
    for (;;) {
      Slot& slot = slots_[index(head)];
      if (slot.turn.load(std::memory_order_acquire) == 2 * round(head)) {
        if (head_.next.compare_exchange_strong(head, head + 1, std::memory_order_relaxed)) {
          slot.construct(std::forward<Args>(args)...);
          slot.turn.store(2 * round(head) + 1, std::memory_order_release);
          return true;
        }
      } else {
        const std::size_t previous = head;
        head = head_.next.load(std::memory_order_acquire);
        if (head == previous) return false;  // the slot is still full: the queue is full
      }
    }
  }

  bool try_push(const T& value) noexcept {
    return try_emplace(value);
  }
  bool try_push(T&& value) noexcept { return try_emplace(std::move(value)); }

  // Thread-safe, non-blocking, never allocates. Returns false when empty.
  bool try_pop(T& out) noexcept {
    std::size_t tail = tail_.next.load(std::memory_order_acquire);
    for (;;) {
      Slot& slot = slots_[index(tail)];
      if (slot.turn.load(std::memory_order_acquire) == 2 * round(tail) + 1) {
        if (tail_.next.compare_exchange_strong(tail, tail + 1, std::memory_order_relaxed)) {
          out = std::move(slot.value());
          slot.destroy();
          slot.turn.store(2 * round(tail) + 2, std::memory_order_release);
          return true;
        }
      } else {
        const std::size_t previous = tail;
        tail = tail_.next.load(std::memory_order_acquire);
        if (tail == previous) return false;  // the slot is still empty: the queue is empty
      }
    }
  }

  // Thread-safe, never blocks. Approximate under concurrency: a snapshot of
  // two indices read at different instants (0 <= size() <= capacity()).
  std::size_t size() const noexcept {
    const auto head = static_cast<std::ptrdiff_t>(head_.next.load(std::memory_order_relaxed));
    const auto tail = static_cast<std::ptrdiff_t>(tail_.next.load(std::memory_order_relaxed));
    const std::ptrdiff_t diff = head - tail;
    if (diff < 0) return 0;
    return std::min(static_cast<std::size_t>(diff), capacity_);
  }
  bool empty() const noexcept { return size() == 0; }
  std::size_t capacity() const noexcept { return capacity_; }

 private:
  struct alignas(kCacheLine) Slot {
    std::atomic<std::size_t> turn{0};  // even: empty for round turn/2; odd: full
    alignas(T) unsigned char storage[sizeof(T)];

    template <typename... Args>
    void construct(Args&&... args) {
      ::new (static_cast<void*>(storage)) T(std::forward<Args>(args)...);
    }
    T& value() noexcept { return *std::launder(reinterpret_cast<T*>(storage)); }
    void destroy() noexcept { value().~T(); }
  };
  static_assert(alignof(Slot) == kCacheLine, "slots must be cache-line aligned");
  static_assert(sizeof(Slot) % kCacheLine == 0, "slots must not share cache lines");
  static_assert(std::atomic<std::size_t>::is_always_lock_free, "turn counters must be lock-free");

  static std::size_t round_up_pow2(std::size_t capacity) {
    if (capacity == 0 || capacity > (std::size_t{1} << 32)) {
      throw std::invalid_argument("MpmcQueue capacity must be in [1, 2^32], got " +
                                  std::to_string(capacity));
    }
    return std::bit_ceil(capacity);
  }
  std::size_t index(std::size_t ticket) const noexcept { return ticket & (capacity_ - 1); }
  std::size_t round(std::size_t ticket) const noexcept { return ticket >> shift_; }

  const std::size_t capacity_;
  const unsigned shift_;
  // make_unique honours alignas(Slot) through C++17 aligned new.
  const std::unique_ptr<Slot[]> slots_;
  // A ticket counter alone on its cache line (alignment and size both one line).
  struct alignas(kCacheLine) Index {
    std::atomic<std::size_t> next{0};
  };
  Index head_;  // .next: the next ticket to push
  Index tail_;  // .next: the next ticket to pop
};

}  // namespace fastroute
