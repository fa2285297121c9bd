// The one error type of startup: its message is the single line printed before exiting with status 1.
#pragma once

#include <stdexcept>
#include <string>

namespace portmux {

class StartupError : public std::runtime_error {
public:
    explicit StartupError(const std::string& what) : std::runtime_error(what) {}
};

}  // namespace portmux
