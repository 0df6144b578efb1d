// Small text helpers shared by settings, query strings and file contents.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace agora {

// The non-empty items of a `sep`-separated list, as written (not trimmed):
// "a,,b," -> {"a", "b"}.
std::vector<std::string> split_list(std::string_view s, char sep = ',');

// `s` without surrounding ASCII whitespace (space, \t, \n, \v, \f, \r).
std::string_view trim(std::string_view s);

}  // namespace agora
