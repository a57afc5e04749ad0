// Bandit: online learning of which arm (model) earns the most reward, with
// concurrent decisions and updates.
//
// Six algorithms over K arms. Context-free: greedy (with the `explore` floor
// this is epsilon-greedy), UCB1, Thompson sampling with a Beta posterior
// (rewards in [0, 1]) or a Gaussian one (any finite reward). Contextual, one
// ridge regression per arm over the transformed feature row plus an
// intercept (disjoint): LinUCB (mean + alpha * width) and linear Thompson
// sampling (a draw from N(mean, alpha^2 * width^2)), where
// width^2 = z^T A^-1 z and A = ridge * I + prior + data. Snapshots hold
// A^-1: an update without decay changes it by a rank-one (Sherman-Morrison)
// step, O(d^2); it is recomputed exactly, O(d^3), every 128 such steps and
// after a decayed update, a merge, an import or a prior.
//
// Every decision first takes a uniformly random allowed arm with probability
// `explore` (the floor that keeps every arm checked), and reports the
// probability that it chooses the arm it chose (its propensity). Forgetting:
// each update multiplies the arm's data statistics by `decay` first, so
// old observations fade. Statistics are sums (count, reward sum, sum of
// squares, b = sum r z, A = sum z z^T), so two bandits' data `merge` by
// adding; a warm-start prior is kept apart from the data and never merged.
//
// Memory ordering: each arm keeps kSnapshotSlots snapshot slots and the
// index of the published one (`current`). A writer (update, merge, import)
// takes the arm's mutex, changes its private statistics, fills a slot that
// is neither published nor read (its reader count is 0), then stores
// `current`. A reader (decide, estimate) never locks: it loads `current`,
// increments that slot's reader count, and loads `current` again; if it
// changed it backs out and retries, else it reads the slot and decrements
// the count when done. The count increment and the reload on the reader's
// side, and the store of `current` and the count check on the writer's side,
// are sequentially consistent (a Dekker pair): either the writer sees the
// reader's count and leaves that slot alone, or the reader sees the new
// `current` and retries. The writer's slot contents happen-before a
// reader's reads (release store / acquire load of `current`), and a
// reader's reads happen-before a later rewrite of the slot (release
// decrement / acquire count check). So readers are lock-free and never wait
// for a writer's update work; a writer waits (yielding) only if every
// other slot is still being read. Random draws come from a per-decision
// generator seeded by (seed, an atomic counter taken relaxed: only its
// uniqueness matters).
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace fastroute {

enum class BanditAlgorithm : std::uint8_t {
  kGreedy = 0,
  kUcb1 = 1,
  kThompsonBeta = 2,
  kThompsonGaussian = 3,
  kLinUcb = 4,
  kLinThompson = 5,
};
inline constexpr int kBanditAlgorithmCount = 6;

struct BanditConfig {
  BanditAlgorithm algorithm = BanditAlgorithm::kThompsonGaussian;
  std::size_t num_arms = 0;
  std::size_t num_features = 0;  // raw row width; read only by the linear algorithms
  double explore = 0.0;          // floor: probability of a uniformly random allowed arm, [0, 1]
  double alpha = 1.0;            // UCB width multiplier / Gaussian and linear Thompson posterior scale, >= 0
  double decay = 1.0;            // data statistics kept per update of an arm, (0, 1]
  double ridge = 1.0;            // the linear models' prior precision, > 0
  std::uint64_t seed = 0;
  // Feature transform of the linear algorithms: z = clamp((g(x) - center) / scale,
  // -clip, clip) with g(x) = sign(x) log1p(|x|) when log_features, else x;
  // a missing (NaN) feature is 0 (its center). Empty center/scale mean 0/1.
  bool log_features = false;
  double clip = 10.0;
  std::vector<double> center;
  std::vector<double> scale;
};

struct BanditChoice {
  std::int32_t arm = -1;
  double propensity = 0.0;  // probability this decision had of choosing `arm`
  double score = 0.0;       // the arm's estimated mean reward (for a row: its linear mean)
};

// What a reader sees of one arm: immutable once published.
struct ArmSnapshot {
  double count = 0.0;  // prior + data observations (decayed)
  double mean = 0.0;   // context-free estimate of the mean reward
  double spread = 0.0; // context-free posterior sd of the mean (Gaussian Thompson)
  double beta_a = 1.0, beta_b = 1.0;
  std::vector<double> theta;  // linear: A^-1 b (d + 1 entries)
  std::vector<double> inverse;  // linear: A^-1 ((d + 1)^2, symmetric, row-major)
};

class Bandit {
 public:
  // Validates the config; throws InvalidInput naming the bad setting.
  explicit Bandit(BanditConfig config);
  Bandit(const Bandit&) = delete;
  Bandit& operator=(const Bandit&) = delete;

  const BanditConfig& config() const { return config_; }
  bool contextual() const;
  std::size_t num_arms() const { return config_.num_arms; }
  std::size_t num_features() const { return config_.num_features; }
  // Doubles per arm in exported statistics: [count, sum, sum_sq, b (D), A (D*D)]
  // with D = num_features + 1 for the linear algorithms, 0 otherwise.
  std::size_t stats_width() const { return stride_; }

  // Chooses an arm for `row` (width num_features; ignored and may be null
  // for the context-free algorithms) among the arms with allowed[arm] != 0
  // (null: all). Thread-safe, lock-free against writers; allocates only the
  // transformed row. Throws InvalidInput for a wrong width or no allowed arm.
  BanditChoice decide(const float* row, std::size_t width, const std::uint8_t* allowed) const;

  // decide() for n contiguous rows. Thread-safe; allocates per call.
  void decide_batch(const float* rows, std::size_t n, std::size_t width, const std::uint8_t* allowed,
                    BanditChoice* out) const;

  // Learns that `arm` earned `reward` on `row`, counted `weight` times.
  // Thread-safe; blocks only other writers of this arm; allocates the new
  // snapshot. Throws InvalidInput (nothing changed) for a bad arm, width,
  // weight, a non-finite reward, or one outside [0, 1] for Thompson-Beta.
  void update(std::int32_t arm, const float* row, std::size_t width, double reward, double weight = 1.0);

  // Adds n observations to the warm-start prior (never decayed, never
  // merged) and republishes each arm once. Validates all rows first.
  void add_prior(const std::int32_t* arms, const float* rows, std::size_t n, std::size_t width,
                 const double* rewards, const double* weights);

  // Per-arm mean estimate and uncertainty (sd) for `row`; out arrays hold K.
  // Thread-safe, lock-free.
  void estimate(const float* row, std::size_t width, double* means, double* widths) const;

  // Adds other's data statistics to this bandit's (not its prior). Throws
  // InvalidInput when the configs differ in algorithm, arms, features,
  // ridge or transform. Thread-safe (locks one arm at a time).
  void merge(const Bandit& other);

  // K x stats_width() doubles of the data (prior=false) or prior statistics.
  std::vector<double> export_stats(bool prior) const;
  // Replaces them; throws InvalidInput for a wrong size or a non-finite value.
  void import_stats(const std::vector<double>& stats, bool prior);

  // The transform of the linear algorithms (z, D entries, intercept last).
  void transform(const float* row, double* z) const;

 private:
  static constexpr std::uint32_t kSnapshotSlots = 4;

  struct Slot {
    mutable std::atomic<std::uint32_t> readers{0};  // readers count through a const Arm
    ArmSnapshot snapshot;  // written only by a writer holding the arm's mu while readers == 0
  };

  struct Arm {
    std::mutex mu;
    std::vector<double> data;   // guarded by mu
    std::vector<double> prior;  // guarded by mu
    std::array<Slot, kSnapshotSlots> slots;
    std::atomic<std::uint32_t> current{0};
    std::uint32_t since_exact = 0;  // rank-one updates since the last exact inverse; guarded by mu
  };

  // A reader's hold on one arm's published snapshot, released on destruction.
  class Reading {
   public:
    explicit Reading(const Arm& arm);
    ~Reading();
    Reading(const Reading&) = delete;
    Reading& operator=(const Reading&) = delete;
    const ArmSnapshot& operator*() const { return slot_->snapshot; }
    const ArmSnapshot* operator->() const { return &slot_->snapshot; }

   private:
    const Slot* slot_;
  };

  std::size_t dim() const { return contextual() ? config_.num_features + 1 : 0; }
  void check_width(std::size_t width, const float* row) const;
  void check_arm(std::int32_t arm) const;
  void check_reward(double reward, const std::string& what) const;
  // Rebuilds and publishes arm's snapshot from its statistics; caller holds
  // arm.mu. `added` (D values, with `weight`): the one observation just added
  // without decay, applied as a rank-one update; null: recompute exactly.
  void publish(Arm& arm, const double* added, double weight) const;
  BanditChoice choose(const double* z, const std::uint8_t* allowed) const;

  BanditConfig config_;
  std::size_t stride_;
  std::vector<std::unique_ptr<Arm>> arms_;
  mutable std::atomic<std::uint64_t> draws_{0};
};

}  // namespace fastroute
