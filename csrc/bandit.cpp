#include "bandit.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <optional>
#include <string>
#include <thread>

#include "linalg.hpp"
#include "draws.hpp"
#include "errors.hpp"

namespace fastroute {

namespace {

constexpr double kInfinity = std::numeric_limits<double>::infinity();
// Largest |reward| and weight accepted: their squares and sums stay far from overflow.
constexpr double kMaxAbsReward = 1e15;
constexpr double kMaxWeight = 1e6;
constexpr std::size_t kMaxArms = 1 << 16;
constexpr std::size_t kMaxFeatures = 4096;
// Rank-one (Sherman-Morrison) updates of A^-1 between exact inversions: bounds rounding drift.
constexpr std::uint32_t kExactEvery = 128;

// Standard normal quantiles at the midpoints of kNodes equal slices of (0, 1):
// the propensity of a Thompson draw integrates over the chosen arm's draw at them.
constexpr std::size_t kNodes = 16;

double normal_cdf(double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }

const std::array<double, kNodes>& quantile_nodes() {
  static const std::array<double, kNodes> nodes = [] {
    std::array<double, kNodes> result{};
    for (std::size_t i = 0; i < kNodes; ++i) {
      const double target = (static_cast<double>(i) + 0.5) / kNodes;
      double low = -10.0, high = 10.0;
      for (int step = 0; step < 80; ++step) {
        const double middle = 0.5 * (low + high);
        (normal_cdf(middle) < target ? low : high) = middle;
      }
      result[i] = 0.5 * (low + high);
    }
    return result;
  }();
  return nodes;
}

// P(draw_c > every other draw) for independent draws N(mean[k], sd[k]^2)
// over the arms listed in `arms` (sd 0 is a point mass).
double probability_largest(std::size_t c, const std::vector<std::size_t>& arms, const std::vector<double>& mean,
                           const std::vector<double>& sd) {
  double total = 0.0;
  for (double t : quantile_nodes()) {
    const double value = mean[c] + sd[c] * t;
    double product = 1.0;
    for (std::size_t k : arms) {
      if (k == c) continue;
      const double gap = value - mean[k];
      product *= sd[k] > 0.0 ? normal_cdf(gap / sd[k]) : (gap > 0.0 ? 1.0 : gap < 0.0 ? 0.0 : 0.5);
      if (product == 0.0) break;
    }
    total += product;
  }
  return total / kNodes;
}

std::string arm_text(std::int32_t arm) { return "arm " + std::to_string(arm); }

// Adds one observation to statistics laid out as [count, sum, sum_sq, b (d), A (d*d)].
void accumulate(double* stats, const double* z, std::size_t d, double reward, double weight) {
  stats[0] += weight;
  stats[1] += weight * reward;
  stats[2] += weight * reward * reward;
  for (std::size_t i = 0; i < d; ++i) {
    stats[3 + i] += weight * reward * z[i];
    for (std::size_t j = 0; j < d; ++j) stats[3 + d + i * d + j] += weight * z[i] * z[j];
  }
}

void require(bool ok, const std::string& message) {
  if (!ok) throw InvalidInput(message);
}

}  // namespace

Bandit::Bandit(BanditConfig config) : config_(std::move(config)) {
  const auto& c = config_;
  require(static_cast<int>(c.algorithm) < kBanditAlgorithmCount, "unknown bandit algorithm");
  require(c.num_arms >= 1 && c.num_arms <= kMaxArms, "a bandit needs between 1 and 65536 arms, got " +
                                                         std::to_string(c.num_arms));
  require(c.num_features <= kMaxFeatures,
          "a linear bandit reads at most 4096 features, got " + std::to_string(c.num_features));
  require(c.explore >= 0.0 && c.explore <= 1.0, "explore must be in [0, 1], got " + std::to_string(c.explore));
  require(std::isfinite(c.alpha) && c.alpha >= 0.0, "alpha must be finite and >= 0");
  require(c.decay > 0.0 && c.decay <= 1.0, "decay must be in (0, 1], got " + std::to_string(c.decay));
  require(std::isfinite(c.ridge) && c.ridge > 0.0, "ridge must be finite and > 0");
  require(std::isfinite(c.clip) && c.clip > 0.0, "clip must be finite and > 0");
  require(c.center.empty() || c.center.size() == c.num_features,
          "center needs one value per feature (" + std::to_string(c.num_features) + ")");
  require(c.scale.empty() || c.scale.size() == c.num_features,
          "scale needs one value per feature (" + std::to_string(c.num_features) + ")");
  for (double v : c.center) require(std::isfinite(v), "center values must be finite");
  for (double v : c.scale) require(std::isfinite(v) && v > 0.0, "scale values must be finite and > 0");
  const std::size_t d = dim();
  stride_ = 3 + d + d * d;
  arms_.reserve(c.num_arms);
  for (std::size_t k = 0; k < c.num_arms; ++k) {
    auto arm = std::make_unique<Arm>();
    arm->data.assign(stride_, 0.0);
    arm->prior.assign(stride_, 0.0);
    std::lock_guard lock(arm->mu);
    publish(*arm, nullptr, 0.0);
    arms_.push_back(std::move(arm));
  }
}

bool Bandit::contextual() const {
  return config_.algorithm == BanditAlgorithm::kLinUcb || config_.algorithm == BanditAlgorithm::kLinThompson;
}

void Bandit::check_width(std::size_t width, const float* row) const {
  if (!contextual()) return;
  require(width == config_.num_features, "feature row has " + std::to_string(width) +
                                             " values; this bandit reads " + std::to_string(config_.num_features));
  require(row != nullptr || width == 0, "a linear bandit needs a feature row");
}

void Bandit::check_reward(double reward, const std::string& what) const {
  require(std::isfinite(reward) && std::fabs(reward) <= kMaxAbsReward,
          what + " must be a finite number of magnitude <= 1e15, got " + std::to_string(reward));
  if (config_.algorithm == BanditAlgorithm::kThompsonBeta)
    require(reward >= 0.0 && reward <= 1.0,
            "Beta Thompson sampling takes rewards in [0, 1], got " + what + " " + std::to_string(reward));
}

void Bandit::check_arm(std::int32_t arm) const {
  require(arm >= 0 && static_cast<std::size_t>(arm) < config_.num_arms,
          arm_text(arm) + " is out of range for " + std::to_string(config_.num_arms) + " arms");
}

void Bandit::transform(const float* row, double* z) const {
  const std::size_t d = config_.num_features;
  for (std::size_t j = 0; j < d; ++j) {
    double x = row[j];
    if (std::isnan(x)) {
      z[j] = 0.0;
      continue;
    }
    if (config_.log_features) x = std::copysign(std::log1p(std::fabs(x)), x);
    if (!config_.center.empty()) x = (x - config_.center[j]) / config_.scale[j];
    z[j] = std::clamp(x, -config_.clip, config_.clip);  // +-inf clamps too
  }
  z[d] = 1.0;  // intercept
}

Bandit::Reading::Reading(const Arm& arm) {
  for (;;) {
    const std::uint32_t index = arm.current.load(std::memory_order_seq_cst);
    const Slot& slot = arm.slots[index];
    slot.readers.fetch_add(1, std::memory_order_seq_cst);
    if (arm.current.load(std::memory_order_seq_cst) == index) {
      slot_ = &slot;
      return;
    }
    slot.readers.fetch_sub(1, std::memory_order_release);  // republished meanwhile: retry
  }
}

Bandit::Reading::~Reading() { slot_->readers.fetch_sub(1, std::memory_order_release); }

void Bandit::publish(Arm& arm, const double* added, double weight) const {
  const std::uint32_t published = arm.current.load(std::memory_order_relaxed);  // only writers store it
  std::uint32_t free_slot = published;
  while (free_slot == published) {
    for (std::uint32_t i = 0; i < kSnapshotSlots; ++i)
      if (i != published && arm.slots[i].readers.load(std::memory_order_seq_cst) == 0) {
        free_slot = i;
        break;
      }
    if (free_slot == published) std::this_thread::yield();  // every other slot is being read
  }
  ArmSnapshot* next = &arm.slots[free_slot].snapshot;
  const ArmSnapshot& previous = arm.slots[published].snapshot;
  const double* p = arm.prior.data();
  const double* q = arm.data.data();
  const double count = p[0] + q[0], sum = p[1] + q[1], squares = p[2] + q[2];
  next->count = count;
  next->mean = count > 0.0 ? sum / count : 0.0;
  // Gaussian Thompson: the sample variance, with one pseudo-observation of variance 1.
  const double variance = (std::max(squares - count * next->mean * next->mean, 0.0) + 1.0) / (count + 1.0);
  next->spread = std::sqrt(variance / (count + 1.0));
  next->beta_a = 1.0 + std::max(sum, 0.0);
  next->beta_b = 1.0 + std::max(count - sum, 0.0);
  const std::size_t d = dim();
  if (d > 0) {
    if (added != nullptr && !previous.inverse.empty() && arm.since_exact < kExactEvery) {
      // Sherman-Morrison, O(d^2): (A + w z z^T)^-1 = A^-1 - w u u^T / (1 + w z^T u), u = A^-1 z.
      std::vector<double> u(d);
      linalg::symmetric_times(previous.inverse.data(), added, u.data(), d);
      const double scale = weight / (1.0 + weight * linalg::dot(added, u.data(), d));
      next->inverse.resize(d * d);
      for (std::size_t i = 0; i < d; ++i) {
        const double factor = scale * u[i];
        const double* from = previous.inverse.data() + i * d;
        double* to = next->inverse.data() + i * d;
        for (std::size_t j = 0; j < d; ++j) to[j] = from[j] - factor * u[j];
      }
      ++arm.since_exact;
    } else {
      std::vector<double> a(d * d);
      for (std::size_t i = 0; i < d * d; ++i) a[i] = p[3 + d + i] + q[3 + d + i];
      double jitter = config_.ridge;
      for (std::size_t i = 0; i < d; ++i) a[i * d + i] += jitter;
      while (!linalg::inverse_spd(a, next->inverse, d)) {  // rounding only: A is ridge * I + a sum of z z^T
        for (std::size_t i = 0; i < d; ++i) a[i * d + i] += jitter;
        jitter *= 2.0;
      }
      arm.since_exact = 0;
    }
    std::vector<double> b(d);
    for (std::size_t i = 0; i < d; ++i) b[i] = p[3 + i] + q[3 + i];
    next->theta.resize(d);
    linalg::symmetric_times(next->inverse.data(), b.data(), next->theta.data(), d);
  }
  arm.current.store(free_slot, std::memory_order_seq_cst);
}

BanditChoice Bandit::decide(const float* row, std::size_t width, const std::uint8_t* allowed) const {
  check_width(width, row);
  std::vector<double> z(dim());
  if (contextual()) transform(row, z.data());
  return choose(z.data(), allowed);
}

void Bandit::decide_batch(const float* rows, std::size_t n, std::size_t width, const std::uint8_t* allowed,
                          BanditChoice* out) const {
  check_width(width, rows);
  std::vector<double> z(dim());
  for (std::size_t i = 0; i < n; ++i) {
    if (contextual()) transform(rows + i * width, z.data());
    out[i] = choose(z.data(), allowed);
  }
}

BanditChoice Bandit::choose(const double* z, const std::uint8_t* allowed) const {
  const std::size_t num_arms = config_.num_arms, d = dim();
  std::vector<std::size_t> arms;
  arms.reserve(num_arms);
  for (std::size_t k = 0; k < num_arms; ++k)
    if (allowed == nullptr || allowed[k] != 0) arms.push_back(k);
  require(!arms.empty(), "no allowed arm to choose from");
  const auto algorithm = config_.algorithm;
  const bool thompson = algorithm == BanditAlgorithm::kThompsonBeta ||
                        algorithm == BanditAlgorithm::kThompsonGaussian ||
                        algorithm == BanditAlgorithm::kLinThompson;
  Draws draws(config_.seed, draws_.fetch_add(1, std::memory_order_relaxed));
  std::vector<double> mean(num_arms, 0.0), sd(num_arms, 0.0), score(num_arms, -kInfinity);
  double total_count = 0.0;
  std::vector<std::optional<Reading>> snapshots(num_arms);
  for (std::size_t k : arms) {
    snapshots[k].emplace(*arms_[k]);
    total_count += (*snapshots[k])->count;
  }
  bool unplayed = false;  // a context-free arm never observed goes first
  for (std::size_t k : arms) {
    const ArmSnapshot& s = **snapshots[k];
    if (d > 0) {
      mean[k] = linalg::dot(s.theta.data(), z, d);
      sd[k] = config_.alpha * std::sqrt(std::max(linalg::quadratic_form(s.inverse.data(), z, d), 0.0));
    } else if (s.count <= 0.0) {
      unplayed = true;
      mean[k] = s.mean;
    } else if (algorithm == BanditAlgorithm::kThompsonBeta) {
      const double a = s.beta_a, b = s.beta_b;
      mean[k] = a / (a + b);  // the propensity integral uses the normal approximation of the Beta
      sd[k] = std::sqrt(a * b / ((a + b) * (a + b) * (a + b + 1.0)));
    } else {
      mean[k] = s.mean;
      sd[k] = algorithm == BanditAlgorithm::kThompsonGaussian ? config_.alpha * s.spread : 0.0;
      if (algorithm == BanditAlgorithm::kUcb1)
        sd[k] = config_.alpha * std::sqrt(2.0 * std::log(std::max(total_count, 1.0)) / s.count);
    }
  }
  for (std::size_t k : arms) {
    const ArmSnapshot& s = **snapshots[k];
    if (d == 0 && s.count <= 0.0) {
      score[k] = kInfinity;
    } else if (!thompson) {
      score[k] = mean[k] + sd[k];  // greedy has sd 0
    } else if (algorithm == BanditAlgorithm::kThompsonBeta) {
      score[k] = draws.beta(s.beta_a, s.beta_b);
    } else {
      score[k] = mean[k] + sd[k] * draws.normal();
    }
  }
  const std::size_t best = *std::max_element(arms.begin(), arms.end(),
                                             [&](std::size_t a, std::size_t b) { return score[a] < score[b]; });
  const double floor_share = config_.explore / static_cast<double>(arms.size());
  const std::size_t chosen = draws.uniform() < config_.explore ? arms[draws.below(arms.size())] : best;
  double main_share;
  if (!thompson || unplayed) {
    // deterministic: the first unplayed arm, or the best score (first of ties)
    std::size_t target = best;
    if (unplayed)
      for (std::size_t k : arms)
        if ((*snapshots[k])->count <= 0.0) {
          target = k;
          break;
        }
    main_share = chosen == target ? 1.0 : 0.0;
  } else {
    main_share = probability_largest(chosen, arms, mean, sd);
  }
  BanditChoice choice;
  choice.arm = static_cast<std::int32_t>(chosen);
  choice.propensity = floor_share + (1.0 - config_.explore) * main_share;
  choice.score = mean[chosen];
  return choice;
}

void Bandit::update(std::int32_t arm, const float* row, std::size_t width, double reward, double weight) {
  check_arm(arm);
  check_width(width, row);
  check_reward(reward, "reward");
  require(std::isfinite(weight) && weight > 0.0 && weight <= kMaxWeight,
          "weight must be in (0, 1e6], got " + std::to_string(weight));
  const std::size_t d = dim();
  std::vector<double> z(d);
  if (d > 0) transform(row, z.data());
  Arm& target = *arms_[static_cast<std::size_t>(arm)];
  std::lock_guard lock(target.mu);
  double* s = target.data.data();
  if (config_.decay < 1.0)
    for (std::size_t i = 0; i < stride_; ++i) s[i] *= config_.decay;
  accumulate(s, z.data(), d, reward, weight);
  publish(target, d > 0 && config_.decay == 1.0 ? z.data() : nullptr, weight);
}

void Bandit::add_prior(const std::int32_t* arms, const float* rows, std::size_t n, std::size_t width,
                       const double* rewards, const double* weights) {
  check_width(width, rows);
  for (std::size_t i = 0; i < n; ++i) {
    check_arm(arms[i]);
    check_reward(rewards[i], "prior reward " + std::to_string(i));
    require(std::isfinite(weights[i]) && weights[i] >= 0.0 && weights[i] <= kMaxWeight,
            "prior weight " + std::to_string(i) + " must be in [0, 1e6]");
  }
  const std::size_t d = dim();
  std::vector<std::vector<double>> added(config_.num_arms, std::vector<double>(stride_, 0.0));
  std::vector<double> z(d);
  for (std::size_t i = 0; i < n; ++i) {
    if (d > 0) transform(rows + i * width, z.data());
    accumulate(added[static_cast<std::size_t>(arms[i])].data(), z.data(), d, rewards[i], weights[i]);
  }
  for (std::size_t k = 0; k < config_.num_arms; ++k) {
    Arm& arm = *arms_[k];
    std::lock_guard lock(arm.mu);
    for (std::size_t i = 0; i < stride_; ++i) arm.prior[i] += added[k][i];
    publish(arm, nullptr, 0.0);
  }
}

void Bandit::estimate(const float* row, std::size_t width, double* means, double* widths) const {
  check_width(width, row);
  const std::size_t d = dim();
  std::vector<double> z(d);
  if (d > 0) transform(row, z.data());
  for (std::size_t k = 0; k < config_.num_arms; ++k) {
    const Reading s(*arms_[k]);
    if (d == 0) {
      means[k] = s->mean;
      widths[k] = s->spread;
      continue;
    }
    means[k] = linalg::dot(s->theta.data(), z.data(), d);
    widths[k] = std::sqrt(std::max(linalg::quadratic_form(s->inverse.data(), z.data(), d), 0.0));
  }
}

void Bandit::merge(const Bandit& other) {
  const auto& a = config_;
  const auto& b = other.config_;
  require(a.algorithm == b.algorithm && a.num_arms == b.num_arms && a.num_features == b.num_features &&
              a.ridge == b.ridge && a.log_features == b.log_features && a.clip == b.clip && a.center == b.center &&
              a.scale == b.scale,
          "merge needs bandits of the same algorithm, arms, features, ridge and feature transform");
  for (std::size_t k = 0; k < a.num_arms; ++k) {
    std::vector<double> theirs;
    {
      std::lock_guard lock(other.arms_[k]->mu);
      theirs = other.arms_[k]->data;
    }
    Arm& arm = *arms_[k];
    std::lock_guard lock(arm.mu);
    for (std::size_t i = 0; i < stride_; ++i) arm.data[i] += theirs[i];
    publish(arm, nullptr, 0.0);
  }
}

std::vector<double> Bandit::export_stats(bool prior) const {
  std::vector<double> out;
  out.reserve(config_.num_arms * stride_);
  for (const auto& arm : arms_) {
    std::lock_guard lock(arm->mu);
    const auto& stats = prior ? arm->prior : arm->data;
    out.insert(out.end(), stats.begin(), stats.end());
  }
  return out;
}

void Bandit::import_stats(const std::vector<double>& stats, bool prior) {
  require(stats.size() == config_.num_arms * stride_,
          "statistics hold " + std::to_string(stats.size()) + " values; this bandit needs " +
              std::to_string(config_.num_arms) + " x " + std::to_string(stride_));
  for (std::size_t k = 0; k < config_.num_arms; ++k) {
    const double* s = stats.data() + k * stride_;
    for (std::size_t i = 0; i < stride_; ++i) require(std::isfinite(s[i]), "statistics must be finite");
    require(s[0] >= 0.0, "an arm's count must be >= 0");
    const std::size_t d = dim();
    for (std::size_t i = 0; i < d; ++i)
      require(s[3 + d + i * d + i] >= 0.0, "the diagonal of an arm's A must be >= 0");
  }
  for (std::size_t k = 0; k < config_.num_arms; ++k) {
    Arm& arm = *arms_[k];
    std::lock_guard lock(arm.mu);
    auto& target = prior ? arm.prior : arm.data;
    target.assign(stats.begin() + static_cast<std::ptrdiff_t>(k * stride_),
                  stats.begin() + static_cast<std::ptrdiff_t>((k + 1) * stride_));
    publish(arm, nullptr, 0.0);
  }
}

}  // namespace fastroute
