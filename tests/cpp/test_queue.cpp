// MpmcQueue: FIFO, bounds, element lifetimes and a many-thread checksum.
#include <cstdint>
#include <thread>
#include <vector>

#include "check.hpp"
#include "queue.hpp"

using fastroute::MpmcQueue;

namespace {

// Counts live instances so the tests can prove every element constructed in
// the queue is destroyed exactly once.
struct Counted {
  static inline std::atomic<long> alive{0};
  static inline std::atomic<long> constructed{0};

  std::uint64_t value = 0;
  Counted() noexcept { ++alive, ++constructed; }
  explicit Counted(std::uint64_t v) noexcept : value(v) { ++alive, ++constructed; }
  Counted(const Counted& other) noexcept : value(other.value) { ++alive, ++constructed; }
  Counted(Counted&& other) noexcept : value(other.value) { ++alive, ++constructed; }
  Counted& operator=(const Counted&) = default;
  Counted& operator=(Counted&&) noexcept = default;
  ~Counted() { --alive; }
};

void capacity_rounds_up_to_power_of_two() {
  CHECK(MpmcQueue<int>(1).capacity() == 1);
  CHECK(MpmcQueue<int>(5).capacity() == 8);
  CHECK(MpmcQueue<int>(1024).capacity() == 1024);
  bool threw = false;
  try {
    MpmcQueue<int> empty(0);
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  CHECK(threw);
}

void fifo_full_and_empty() {
  MpmcQueue<int> queue(4);
  int out = -1;
  CHECK(!queue.try_pop(out));
  for (int i = 0; i < 4; ++i) CHECK(queue.try_push(i));
  CHECK(!queue.try_push(99));
  CHECK(queue.size() == 4);
  for (int round = 0; round < 3; ++round) {  // wraps the ring several times
    for (int i = 0; i < 4; ++i) {
      CHECK(queue.try_pop(out));
      CHECK(out == i);
      CHECK(queue.try_push(i));
    }
  }
  for (int i = 0; i < 4; ++i) CHECK(queue.try_pop(out) && out == i);
  CHECK(queue.empty());
}

void destructor_destroys_queued_elements() {
  {
    MpmcQueue<Counted> queue(8);
    for (std::uint64_t i = 0; i < 5; ++i) CHECK(queue.try_emplace(i));
    Counted out;
    CHECK(queue.try_pop(out) && out.value == 0);
    CHECK(Counted::alive.load() == 5);  // 4 queued + out
  }
  CHECK(Counted::alive.load() == 0);
}

// P producers each push `per_producer` tagged values; C consumers pop until
// all are seen. Checks the sum, the count, per-producer FIFO as seen by each
// consumer, and that every element was destroyed.
void many_producers_and_consumers(int producers, int consumers, std::uint64_t per_producer) {
  const long constructed_before = Counted::constructed.load();
  std::atomic<std::uint64_t> popped_sum{0};
  std::atomic<std::uint64_t> popped_count{0};
  std::atomic<int> order_violations{0};
  {
    MpmcQueue<Counted> queue(64);
    const std::uint64_t total = per_producer * static_cast<std::uint64_t>(producers);
    std::vector<std::thread> threads;
    for (int p = 0; p < producers; ++p) {
      threads.emplace_back([&, p] {
        for (std::uint64_t i = 0; i < per_producer; ++i) {
          const std::uint64_t tagged = (static_cast<std::uint64_t>(p) << 40) | i;
          while (!queue.try_emplace(tagged)) std::this_thread::yield();
        }
      });
    }
    for (int c = 0; c < consumers; ++c) {
      threads.emplace_back([&] {
        std::vector<std::int64_t> last_seen(static_cast<std::size_t>(producers), -1);
        Counted item;
        while (popped_count.load(std::memory_order_relaxed) < total) {
          if (!queue.try_pop(item)) {
            std::this_thread::yield();
            continue;
          }
          const auto producer = static_cast<std::size_t>(item.value >> 40);
          const auto sequence = static_cast<std::int64_t>(item.value & ((std::uint64_t{1} << 40) - 1));
          if (sequence <= last_seen[producer]) ++order_violations;
          last_seen[producer] = sequence;
          popped_sum += item.value;
          ++popped_count;
        }
      });
    }
    for (auto& thread : threads) thread.join();
    std::uint64_t expected_sum = 0;
    for (int p = 0; p < producers; ++p) {
      for (std::uint64_t i = 0; i < per_producer; ++i) expected_sum += (static_cast<std::uint64_t>(p) << 40) | i;
    }
    CHECK(popped_count.load() == total);
    CHECK(popped_sum.load() == expected_sum);
    CHECK(order_violations.load() == 0);
    CHECK(queue.empty());
  }
  CHECK(Counted::alive.load() == 0);
  CHECK(Counted::constructed.load() - constructed_before >= static_cast<long>(per_producer) * producers);
}

}  // namespace

int main() {
  RUN(capacity_rounds_up_to_power_of_two);
  RUN(fifo_full_and_empty);
  RUN(destructor_destroys_queued_elements);
  RUN([] { many_producers_and_consumers(1, 1, 200'000); });
  RUN([] { many_producers_and_consumers(4, 4, 50'000); });
  RUN([] { many_producers_and_consumers(8, 2, 20'000); });
  return TEST_MAIN_RESULT();
}
