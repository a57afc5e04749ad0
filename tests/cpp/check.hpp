// A minimal check macro for the C++ tests: reports and counts failures,
// and main() returns non-zero when any check failed.
#pragma once

#include <atomic>
#include <cstdio>

namespace fastroute::testing {

inline std::atomic<int> failures{0};

}  // namespace fastroute::testing

#define CHECK(condition)                                                              \
  do {                                                                                \
    if (!(condition)) {                                                               \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #condition); \
      ++fastroute::testing::failures;                                                 \
    }                                                                                 \
  } while (false)

#define RUN(test)                          \
  do {                                     \
    std::fprintf(stderr, "[ run ] %s\n", #test); \
    test();                                \
  } while (false)

#define TEST_MAIN_RESULT() (fastroute::testing::failures.load() == 0 ? 0 : 1)
