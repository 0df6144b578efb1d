// Boost.JSON compiled from its sources in the fuzz tree (instead of the
// system library), so libFuzzer sees coverage inside the JSON parser.
#include <boost/json/src.hpp>
