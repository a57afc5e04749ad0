// Error kinds raised by the C++ core. csrc/module.cpp maps each one to a
// Python class under fastroute.FastrouteError (see python/fastroute/errors.py).
#pragma once

#include <exception>
#include <stdexcept>
#include <string>

namespace fastroute {

// The caller passed a value the core cannot use (empty, NaN, wrong shape...).
// Python: fastroute.InvalidInput (a ValueError).
struct InvalidInput : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

// The caller passed a type the core does not handle (complex, object...).
// Python: fastroute.UnsupportedInput (a TypeError).
struct UnsupportedInput : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

// A file's bytes claim a known format but its header is truncated,
// inconsistent or declares absurd sizes. Python: fastroute.CorruptFile.
struct CorruptFile : InvalidInput {
  using InvalidInput::InvalidInput;
};

// The dispatcher (or one of its lanes) was closed: the request was not
// accepted. Python: fastroute.RouterClosed.
struct Closed : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A bounded resource is used up (every dispatcher lane is taken): nothing
// was started. Python: fastroute.Overloaded.
struct Exhausted : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Rethrows `error` as the same kind with `context` prefixed to its message
// ("item 3: "); other exceptions propagate unchanged.
[[noreturn]] inline void rethrow_with_context(std::exception_ptr error, const std::string& context) {
  try {
    std::rethrow_exception(error);
  } catch (const CorruptFile& e) {
    throw CorruptFile(context + e.what());
  } catch (const InvalidInput& e) {
    throw InvalidInput(context + e.what());
  } catch (const UnsupportedInput& e) {
    throw UnsupportedInput(context + e.what());
  }
}

}  // namespace fastroute
