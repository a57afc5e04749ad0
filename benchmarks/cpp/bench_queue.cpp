// Queue throughput: fastroute::MpmcQueue vs moodycamel::ConcurrentQueue vs a
// mutex-guarded std::deque, P producers / C consumers moving 8-byte items.
// Usage: bench_queue <fastroute|moodycamel|mutex> <producers> <consumers> <items>
// Prints the items moved per second (all producers together).
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <concurrentqueue/concurrentqueue.h>

#include "queue.hpp"

namespace {

constexpr std::size_t kCapacity = 4096;

struct FastrouteQueue {
  fastroute::MpmcQueue<std::uint64_t> queue{kCapacity};
  bool push(std::uint64_t v) { return queue.try_push(v); }
  bool pop(std::uint64_t& v) { return queue.try_pop(v); }
};

struct MoodycamelQueue {
  moodycamel::ConcurrentQueue<std::uint64_t> queue{kCapacity};
  bool push(std::uint64_t v) { return queue.enqueue(v); }
  bool pop(std::uint64_t& v) { return queue.try_dequeue(v); }
};

struct MutexDequeQueue {
  std::mutex mu;
  std::deque<std::uint64_t> items;  // guarded by mu
  bool push(std::uint64_t v) {
    std::lock_guard lock(mu);
    if (items.size() >= kCapacity) return false;
    items.push_back(v);
    return true;
  }
  bool pop(std::uint64_t& v) {
    std::lock_guard lock(mu);
    if (items.empty()) return false;
    v = items.front();
    items.pop_front();
    return true;
  }
};

template <typename Queue>
double run(int producers, int consumers, std::uint64_t items) {
  Queue queue;
  const std::uint64_t per_producer = items / static_cast<std::uint64_t>(producers);
  const std::uint64_t total = per_producer * static_cast<std::uint64_t>(producers);
  std::atomic<std::uint64_t> popped{0}, checksum{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (int p = 0; p < producers; ++p) {
    threads.emplace_back([&] {
      while (!go.load()) {}
      for (std::uint64_t i = 1; i <= per_producer; ++i) {
        while (!queue.push(i)) std::this_thread::yield();
      }
    });
  }
  for (int c = 0; c < consumers; ++c) {
    threads.emplace_back([&] {
      while (!go.load()) {}
      std::uint64_t local_sum = 0, local_count = 0, v = 0;
      while (popped.load(std::memory_order_relaxed) < total) {
        if (queue.pop(v)) {
          local_sum += v;
          if (++local_count % 256 == 0) popped.fetch_add(256, std::memory_order_relaxed);
        } else {
          popped.fetch_add(local_count % 256, std::memory_order_relaxed);
          local_count -= local_count % 256;
          std::this_thread::yield();
        }
      }
      checksum += local_sum;
    });
  }
  const auto start = std::chrono::steady_clock::now();
  go = true;
  for (auto& t : threads) t.join();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const std::uint64_t expected = static_cast<std::uint64_t>(producers) * per_producer * (per_producer + 1) / 2;
  if (checksum.load() != expected) {
    std::fprintf(stderr, "checksum mismatch: %llu != %llu\n", static_cast<unsigned long long>(checksum.load()),
                 static_cast<unsigned long long>(expected));
    std::exit(2);
  }
  return static_cast<double>(total) / seconds;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s <fastroute|moodycamel|mutex> <producers> <consumers> <items>\n", argv[0]);
    return 1;
  }
  const std::string impl = argv[1];
  const int producers = std::atoi(argv[2]), consumers = std::atoi(argv[3]);
  const auto items = std::strtoull(argv[4], nullptr, 10);
  double rate = 0;
  if (impl == "fastroute") {
    rate = run<FastrouteQueue>(producers, consumers, items);
  } else if (impl == "moodycamel") {
    rate = run<MoodycamelQueue>(producers, consumers, items);
  } else if (impl == "mutex") {
    rate = run<MutexDequeQueue>(producers, consumers, items);
  } else {
    std::fprintf(stderr, "unknown queue %s\n", impl.c_str());
    return 1;
  }
  std::printf("%.0f\n", rate);
  return 0;
}
