#pragma once
// The fuzzers' assertion: a broken property aborts, so libFuzzer keeps the input that broke it.
#include <cstdio>
#include <cstdlib>
#include <string>

namespace courtyard::fuzz {

inline void check(bool ok, const char* what, const std::string& detail = "") {
  if (!ok) {
    std::fprintf(stderr, "property broken: %s\n%s\n", what, detail.c_str());
    std::abort();
  }
}

}  // namespace courtyard::fuzz
