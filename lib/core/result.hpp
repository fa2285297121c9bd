// A value or a human-readable error, for control-side parsing where exceptions would hide the flow.
#pragma once

#include <optional>
#include <string>
#include <utility>

namespace portmux {

template <class T>
class Result {
public:
    static Result ok(T value) { return Result(std::move(value), {}); }
    static Result fail(std::string error) { return Result(std::nullopt, std::move(error)); }

    bool has_value() const { return value_.has_value(); }
    explicit operator bool() const { return has_value(); }
    const T& value() const { return *value_; }
    T& value() { return *value_; }
    const T& operator*() const { return *value_; }
    const T* operator->() const { return &*value_; }
    const std::string& error() const { return error_; }

private:
    Result(std::optional<T> value, std::string error) : value_(std::move(value)), error_(std::move(error)) {}
    std::optional<T> value_;
    std::string error_;
};

}  // namespace portmux
