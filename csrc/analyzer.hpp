// Analyzer: detects an input's modality and extracts the feature vector
// defined in features.hpp. Pure C++, no Python types; thread-safe (no shared
// state), never allocates on the array path. Errors: errors.hpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "features.hpp"

namespace fastroute {

struct Analysis {
  Modality modality = Modality::kBinary;
  std::string_view mime;  // static string; empty when not from bytes
  FeatureVector features{};
};

}  // namespace fastroute
