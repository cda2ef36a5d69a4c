// src/base/status.h
// Errors as values: a code from the one list of API.md, a message for a person, and the
// details that API.md names (param, required, available, ...), already encoded as JSON.
// Owns: ErrorCode, Error, Result<T>. Does not: map codes to HTTP statuses (server/).
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace credit {

enum class ErrorCode : unsigned char {
  kOk = 0,
  // 400
  kInvalidJson,
  kInvalidRequest,
  kInvalidAmount,
  kInvalidUsage,
  kUnknownField,
  kTooManyOps,
  kCaptureExceedsHold,
  // 401
  kUnauthorized,
  // 402
  kInsufficientCredits,
  // 403
  kForbidden,
  kPurchaseNotAllowed,
  kClockDisabled,
  // 404
  kAccountNotFound,
  kHoldNotFound,
  kChargeNotFound,
  kKeyNotFound,
  kNotFound,
  // 409
  kAccountExists,
  kHoldNotOpen,
  kAccountClosed,
  kClockBackwards,
  kChargeNotRefundable,
  kLimitReached,
  kBackfillOutOfOrder,
  // 413
  kBodyTooLarge,
  // 422
  kIdempotencyKeyReused,
  // 429
  kRateLimited,
  // 503
  kOverloaded,
  kShuttingDown,
  kStorageFailed,
  kIdempotencyCapacity,
};

// The snake_case name API.md uses for the code.
std::string_view error_code_name(ErrorCode code);
// The HTTP status API.md gives the code.
int error_code_http_status(ErrorCode code);

// One detail of an error: a field name and its value already encoded as JSON
// (a number, a quoted string, null, ...).
struct ErrorDetail {
  std::string key;
  std::string json_value;
};

struct Error {
  ErrorCode code = ErrorCode::kOk;
  std::string message;
  std::vector<ErrorDetail> details;

  Error() = default;
  Error(ErrorCode c, std::string m) : code(c), message(std::move(m)) {}
  Error& with(std::string key, std::string json_value) {
    details.push_back({std::move(key), std::move(json_value)});
    return *this;
  }
  Error& with_string(std::string key, std::string_view value);
  // The value of a detail, or an empty string.
  std::string_view detail(std::string_view key) const;
};

// Result<T>: a value or an Error. Cheap to move; no exceptions.
template <typename T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}
  Result(Error error) : v_(std::move(error)) {}
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() { return std::get<0>(v_); }
  const T& value() const { return std::get<0>(v_); }
  T& operator*() { return value(); }
  const T& operator*() const { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const Error& error() const { return std::get<1>(v_); }
  Error& error() { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

struct Unit {};
using Status = Result<Unit>;
inline Status ok_status() { return Status(Unit{}); }

}  // namespace credit
