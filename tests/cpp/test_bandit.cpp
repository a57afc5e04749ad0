// Bandit tests for sanitizer builds (ASan+UBSan, TSan): every algorithm
// learns the best arm, propensities match observed frequencies, linear
// bandits learn a rule over features, forgetting follows a change, bad
// rewards and widths change nothing, merge and export/import preserve
// decisions, and concurrent deciders and updaters keep every count.
#include <cmath>
#include <limits>
#include <thread>
#include <vector>

#include "bandit.hpp"
#include "check.hpp"
#include "draws.hpp"
#include "errors.hpp"

using namespace fastroute;

namespace {

constexpr BanditAlgorithm kAll[] = {BanditAlgorithm::kGreedy,           BanditAlgorithm::kUcb1,
                                    BanditAlgorithm::kThompsonBeta,     BanditAlgorithm::kThompsonGaussian,
                                    BanditAlgorithm::kLinUcb,           BanditAlgorithm::kLinThompson};

BanditConfig config_for(BanditAlgorithm algorithm, std::size_t arms, std::size_t features) {
  BanditConfig config;
  config.algorithm = algorithm;
  config.num_arms = arms;
  config.num_features = features;
  config.seed = 7;
  config.explore = algorithm == BanditAlgorithm::kGreedy ? 0.1 : 0.0;
  config.alpha = algorithm == BanditAlgorithm::kUcb1 ? 0.5 : 1.0;
  return config;
}

// Bernoulli arms with success rates 0.2, 0.5, 0.8: the share of the last 1000
// decisions going to the best arm.
double best_share(Bandit& bandit) {
  Draws world(99, 0);
  const double rate[] = {0.2, 0.5, 0.8};
  const float row[2] = {0.5f, -1.0f};
  int best = 0;
  for (int step = 0; step < 4000; ++step) {
    const BanditChoice choice = bandit.decide(row, 2, nullptr);
    CHECK(choice.arm >= 0 && choice.arm < 3);
    CHECK(choice.propensity > 0.0 && choice.propensity <= 1.0 + 1e-12);
    const double reward = world.uniform() < rate[choice.arm] ? 1.0 : 0.0;
    bandit.update(choice.arm, row, 2, reward);
    if (step >= 3000 && choice.arm == 2) ++best;
  }
  return best / 1000.0;
}

void every_algorithm_learns_the_best_arm() {
  for (BanditAlgorithm algorithm : kAll) {
    Bandit bandit(config_for(algorithm, 3, 2));
    const double share = best_share(bandit);
    if (share < 0.8) std::fprintf(stderr, "algorithm %d: best share %.3f\n", static_cast<int>(algorithm), share);
    CHECK(share >= 0.8);
  }
}

// Without updates in between, the frequency of each arm over many decisions
// matches the mean propensity reported for it.
void propensities_match_frequencies() {
  for (BanditAlgorithm algorithm : kAll) {
    BanditConfig config = config_for(algorithm, 3, 1);
    config.explore = 0.2;
    Bandit bandit(config);
    const float rows[3] = {0.0f, 1.0f, -1.0f};
    for (int i = 0; i < 30; ++i)
      for (std::int32_t arm = 0; arm < 3; ++arm)
        bandit.update(arm, rows + arm, 1, arm == 1 ? 0.6 : (i % 2 ? 0.55 : 0.45));
    const float row[1] = {0.3f};
    const int n = 40000;
    double seen[3] = {0, 0, 0}, reported[3] = {0, 0, 0};
    for (int i = 0; i < n; ++i) {
      const BanditChoice c = bandit.decide(row, 1, nullptr);
      seen[c.arm] += 1.0 / n;
      reported[c.arm] += c.propensity;
    }
    for (int arm = 0; arm < 3; ++arm) {
      const double mean_propensity = seen[arm] > 0 ? reported[arm] / (seen[arm] * n) : 0.0;
      const bool close = std::fabs(mean_propensity - seen[arm]) < 0.03;
      if (!close)
        std::fprintf(stderr, "algorithm %d arm %d: frequency %.4f, propensity %.4f\n", static_cast<int>(algorithm),
                     arm, seen[arm], mean_propensity);
      CHECK(close);
    }
  }
}

// Arm 0 pays when x0 < 0, arm 1 when x0 > 0: a linear bandit learns the split.
void linear_bandits_learn_a_rule_over_features() {
  for (BanditAlgorithm algorithm : {BanditAlgorithm::kLinUcb, BanditAlgorithm::kLinThompson}) {
    Bandit bandit(config_for(algorithm, 2, 3));
    Draws world(5, 0);
    int right = 0;
    for (int step = 0; step < 3000; ++step) {
      const float x0 = static_cast<float>(world.uniform() * 2 - 1);
      const float row[3] = {x0, std::numeric_limits<float>::quiet_NaN(), static_cast<float>(world.normal())};
      const BanditChoice c = bandit.decide(row, 3, nullptr);
      const int best = x0 < 0 ? 0 : 1;
      bandit.update(c.arm, row, 3, (c.arm == best ? 1.0 : 0.0) + 0.1 * world.normal());
      if (step >= 2000 && c.arm == best) ++right;
    }
    CHECK(right >= 850);
  }
}

// The best arm turns bad: with decay the bandit moves away, and back when it recovers.
void forgetting_follows_a_change() {
  BanditConfig config = config_for(BanditAlgorithm::kThompsonGaussian, 2, 0);
  config.decay = 0.98;
  config.explore = 0.05;
  Bandit bandit(config);
  Draws world(3, 0);
  auto run = [&](double good_arm_rate) {
    int first = 0;
    for (int step = 0; step < 1500; ++step) {
      const BanditChoice c = bandit.decide(nullptr, 0, nullptr);
      const double rate = c.arm == 0 ? good_arm_rate : 0.5;
      bandit.update(c.arm, nullptr, 0, world.uniform() < rate ? 1.0 : 0.0);
      if (step >= 1000 && c.arm == 0) ++first;
    }
    return first / 500.0;
  };
  CHECK(run(0.9) > 0.8);
  CHECK(run(0.1) < 0.2);
  CHECK(run(0.9) > 0.8);
}

template <class Error, class Work>
bool throws(Work&& work) {
  try {
    work();
  } catch (const Error&) {
    return true;
  }
  return false;
}

void bad_input_changes_nothing() {
  for (BanditAlgorithm algorithm : kAll) {
    Bandit bandit(config_for(algorithm, 2, 2));
    const float row[2] = {1.0f, 2.0f};
    bandit.update(0, row, 2, 0.5);
    const auto before = bandit.export_stats(false);
    CHECK(throws<InvalidInput>([&] { bandit.update(0, row, 2, std::nan("")); }));
    CHECK(throws<InvalidInput>([&] { bandit.update(0, row, 2, std::numeric_limits<double>::infinity()); }));
    CHECK(throws<InvalidInput>([&] { bandit.update(0, row, 2, 1e300); }));
    CHECK(throws<InvalidInput>([&] { bandit.update(2, row, 2, 0.5); }));
    CHECK(throws<InvalidInput>([&] { bandit.update(-1, row, 2, 0.5); }));
    CHECK(throws<InvalidInput>([&] { bandit.update(0, row, 2, 0.5, -1.0); }));
    if (algorithm == BanditAlgorithm::kThompsonBeta) CHECK(throws<InvalidInput>([&] { bandit.update(0, row, 2, 1.5); }));
    if (bandit.contextual()) {
      CHECK(throws<InvalidInput>([&] { bandit.update(0, row, 1, 0.5); }));
      CHECK(throws<InvalidInput>([&] { bandit.decide(row, 3, nullptr); }));
    }
    const std::uint8_t none[2] = {0, 0};
    CHECK(throws<InvalidInput>([&] { bandit.decide(row, 2, none); }));
    CHECK(throws<InvalidInput>([&] { bandit.import_stats(std::vector<double>(3, 0.0), false); }));
    auto poisoned = before;
    poisoned[1] = std::nan("");
    CHECK(throws<InvalidInput>([&] { bandit.import_stats(poisoned, false); }));
    CHECK(bandit.export_stats(false) == before);
    // Infinite and NaN features are clamped or zeroed: the statistics stay finite.
    const float wild[2] = {std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN()};
    bandit.update(1, wild, 2, 0.25);
    for (double v : bandit.export_stats(false)) CHECK(std::isfinite(v));
    const std::uint8_t only_one[2] = {0, 1};
    CHECK(bandit.decide(wild, 2, only_one).arm == 1);
  }
  BanditConfig bad = config_for(BanditAlgorithm::kLinUcb, 2, 2);
  bad.decay = 0.0;
  CHECK(throws<InvalidInput>([&] { Bandit b(bad); }));
  bad = config_for(BanditAlgorithm::kLinUcb, 0, 2);
  CHECK(throws<InvalidInput>([&] { Bandit b(bad); }));
  bad = config_for(BanditAlgorithm::kLinUcb, 2, 2);
  bad.scale = {1.0, 0.0};
  CHECK(throws<InvalidInput>([&] { Bandit b(bad); }));
}

// Two bandits on halves of a stream, merged, decide as one that saw it all;
// an exported and imported bandit decides as the original.
void merge_and_import_preserve_decisions() {
  for (BanditAlgorithm algorithm : {BanditAlgorithm::kLinUcb, BanditAlgorithm::kUcb1, BanditAlgorithm::kGreedy}) {
    BanditConfig config = config_for(algorithm, 3, 2);
    config.explore = 0.0;
    Bandit whole(config), left(config), right(config), copy(config);
    Draws world(11, 0);
    for (int i = 0; i < 600; ++i) {
      const float row[2] = {static_cast<float>(world.normal()), static_cast<float>(world.normal())};
      const auto arm = static_cast<std::int32_t>(world.below(3));
      const double reward = row[0] * (arm - 1) + 0.1 * world.normal();
      whole.update(arm, row, 2, reward);
      (i % 2 ? left : right).update(arm, row, 2, reward);
    }
    left.merge(right);
    copy.import_stats(whole.export_stats(false), false);
    const auto a = whole.export_stats(false), b = left.export_stats(false);
    double worst = 0;
    for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(a[i] - b[i]) / (1 + std::fabs(a[i])));
    CHECK(worst < 1e-9);
    int same = 0;
    for (int i = 0; i < 500; ++i) {
      const float row[2] = {static_cast<float>(world.normal()), static_cast<float>(world.normal())};
      const auto expected = whole.decide(row, 2, nullptr).arm;
      same += (left.decide(row, 2, nullptr).arm == expected) + (copy.decide(row, 2, nullptr).arm == expected);
    }
    CHECK(same == 1000);
  }
  Bandit linear(config_for(BanditAlgorithm::kLinUcb, 2, 2)), free(config_for(BanditAlgorithm::kUcb1, 2, 2));
  CHECK(throws<InvalidInput>([&] { linear.merge(free); }));
}

// A warm-start prior moves the estimates but is neither exported as data nor merged.
void prior_is_kept_apart() {
  Bandit bandit(config_for(BanditAlgorithm::kLinUcb, 2, 1)), other(config_for(BanditAlgorithm::kLinUcb, 2, 1));
  const std::int32_t arms[4] = {0, 0, 1, 1};
  const float rows[4] = {1, -1, 1, -1};
  const double rewards[4] = {1, 1, 0, 0}, weights[4] = {5, 5, 5, 5};
  bandit.add_prior(arms, rows, 4, 1, rewards, weights);
  double means[2], widths[2];
  bandit.estimate(rows, 1, means, widths);
  CHECK(means[0] > 0.8 && means[1] < 0.1);
  for (double v : bandit.export_stats(false)) CHECK(v == 0.0);
  other.merge(bandit);
  for (double v : other.export_stats(false)) CHECK(v == 0.0);
}

// Deciders run while writers update: every choice is valid and every update counted.
void concurrent_decide_and_update() {
  for (BanditAlgorithm algorithm : {BanditAlgorithm::kLinThompson, BanditAlgorithm::kThompsonBeta}) {
    Bandit bandit(config_for(algorithm, 4, 3));
    std::atomic<bool> stop{false};
    std::atomic<long> bad{0}, decided{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 3; ++t)
      threads.emplace_back([&, t] {
        const float row[3] = {static_cast<float>(t), 1.0f, -2.0f};
        while (!stop.load(std::memory_order_acquire)) {
          const BanditChoice c = bandit.decide(row, 3, nullptr);
          if (c.arm < 0 || c.arm >= 4 || !(c.propensity > 0.0 && c.propensity <= 1.0 + 1e-12)) ++bad;
          ++decided;
        }
      });
    constexpr int kWriters = 2, kUpdates = 3000;
    std::vector<std::thread> writers;
    for (int w = 0; w < kWriters; ++w)
      writers.emplace_back([&, w] {
        for (int i = 0; i < kUpdates; ++i) {
          const float row[3] = {static_cast<float>(i % 5), static_cast<float>(w), 0.5f};
          bandit.update(i % 4, row, 3, (i % 3) / 2.0);
        }
      });
    for (auto& t : writers) t.join();
    stop.store(true, std::memory_order_release);
    for (auto& t : threads) t.join();
    CHECK(bad.load() == 0);
    CHECK(decided.load() > 0);
    const auto stats = bandit.export_stats(false);
    double count = 0;
    for (std::size_t k = 0; k < 4; ++k) count += stats[k * bandit.stats_width()];
    CHECK(count == kWriters * kUpdates);
  }
}

// The rank-one factor update agrees with a fresh factorization.
void rank_one_updates_match_refactoring() {
  BanditConfig config = config_for(BanditAlgorithm::kLinUcb, 1, 4);
  Bandit incremental(config), fresh(config);
  Draws world(1, 0);
  for (int i = 0; i < 2000; ++i) {
    float row[4];
    for (float& v : row) v = static_cast<float>(world.normal() * 3);
    incremental.update(0, row, 4, world.normal(), 1.0 + world.uniform());
  }
  fresh.import_stats(incremental.export_stats(false), false);
  const float row[4] = {0.5f, -1.0f, 2.0f, 0.0f};
  double m1[1], w1[1], m2[1], w2[1];
  incremental.estimate(row, 4, m1, w1);
  fresh.estimate(row, 4, m2, w2);
  CHECK(std::fabs(m1[0] - m2[0]) < 1e-9 && std::fabs(w1[0] - w2[0]) < 1e-9);
}

}  // namespace

int main() {
  RUN(every_algorithm_learns_the_best_arm);
  RUN(propensities_match_frequencies);
  RUN(linear_bandits_learn_a_rule_over_features);
  RUN(forgetting_follows_a_change);
  RUN(bad_input_changes_nothing);
  RUN(merge_and_import_preserve_decisions);
  RUN(prior_is_kept_apart);
  RUN(concurrent_decide_and_update);
  RUN(rank_one_updates_match_refactoring);
  return TEST_MAIN_RESULT();
}
