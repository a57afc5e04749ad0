// What the text bindings (bind_ngrams.cpp, bind_linear.cpp) share: holding a
// text's UTF-8 while the GIL is released.
#pragma once

#include <pybind11/pybind11.h>

#include <optional>
#include <string>
#include <string_view>

namespace fastroute::binding {

// The UTF-8 of one text and what keeps it alive: the caller holds the str
// itself; a bytes-like text's buffer export pins its memory.
struct HeldText {
  std::string_view utf8;
  std::optional<pybind11::buffer_info> view;
};

// A str (CPython's cached UTF-8) or contiguous bytes-like object; raises
// InvalidInput for a str with lone surrogates and UnsupportedInput for any
// other type, `where` ("item 3: ") prefixed. Needs the GIL.
HeldText hold_text(pybind11::handle text, const std::string& where);

}  // namespace fastroute::binding
