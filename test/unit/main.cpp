// Catch2's own main for the unit tests that need no EAL.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
