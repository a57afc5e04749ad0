// Linear scorer: one linear function per model over dense features (the
// analyzer's and user columns, standardised, NaN = the training mean) and
// sparse features (hashed n-grams, ngrams.hpp). The model with the highest
// score serves the input.
//
// Immutable after construction: any number of threads may score at once.
// Scoring never allocates and never blocks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace fastroute {

struct LinearWeights {
  std::size_t models = 0, dense = 0, sparse = 0;
  std::vector<float> dense_weights;   // dense x models, feature-major
  std::vector<float> dense_mean;      // dense: subtracted, and what NaN becomes
  std::vector<float> dense_scale;     // dense: divided by (> 0)
  std::vector<float> sparse_weights;  // sparse x models, feature-major
  std::vector<float> bias;            // models (calibration offsets included)
};

class LinearScorer {
 public:
  // Throws InvalidInput naming the array whose size does not match, or a
  // non-finite weight or scale <= 0.
  explicit LinearScorer(LinearWeights weights);

  std::size_t models() const { return w_.models; }
  std::size_t dense() const { return w_.dense; }
  std::size_t sparse() const { return w_.sparse; }

  // Scores one input: `dense` holds dense() values (may be null when
  // dense() == 0), indices/values one sparse row. Writes models() scores
  // and returns the best model's index (the first on a tie). Throws
  // InvalidInput for a sparse index outside [0, sparse()).
  std::size_t score(const float* dense, std::span<const std::int32_t> indices, std::span<const double> values,
                    float* scores) const;

  // Scores n CSR rows (row r: [indptr[r], indptr[r + 1])) with dense rows
  // (n x dense(), may be null when dense() == 0); writes n x models() scores
  // and n best indices. Throws InvalidInput "row r: ..." as score() does.
  void score_batch(const float* dense, std::size_t n, const std::int64_t* indptr, const std::int32_t* indices,
                   const double* values, float* scores, std::int32_t* best) const;

 private:
  LinearWeights w_;
};

}  // namespace fastroute
