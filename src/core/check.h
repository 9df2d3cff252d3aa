// The validation layer's helpers: every failed check throws int4mm::Error with
// "<op>: <argument> <what was expected>, got <what was given>".
#pragma once

#include <sstream>
#include <string>
#include <utility>

#include "int4mm/int4mm.h"

namespace int4mm::detail {

template <typename... Parts>
std::string concat(Parts&&... parts) {
  std::ostringstream os;
  (os << ... << std::forward<Parts>(parts));
  return os.str();
}

template <typename... Parts>
[[noreturn]] void fail(const char* op, Parts&&... parts) {
  throw Error(concat(op, ": ", std::forward<Parts>(parts)...));
}


}  // namespace int4mm::detail
