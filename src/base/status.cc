#include "base/status.h"

#include "base/json_writer.h"

namespace credit {

std::string_view error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk: return "ok";
    case ErrorCode::kInvalidJson: return "invalid_json";
    case ErrorCode::kInvalidRequest: return "invalid_request";
    case ErrorCode::kInvalidAmount: return "invalid_amount";
    case ErrorCode::kInvalidUsage: return "invalid_usage";
    case ErrorCode::kUnknownField: return "unknown_field";
    case ErrorCode::kTooManyOps: return "too_many_ops";
    case ErrorCode::kCaptureExceedsHold: return "capture_exceeds_hold";
    case ErrorCode::kUnauthorized: return "unauthorized";
    case ErrorCode::kInsufficientCredits: return "insufficient_credits";
    case ErrorCode::kForbidden: return "forbidden";
    case ErrorCode::kPurchaseNotAllowed: return "purchase_not_allowed";
    case ErrorCode::kClockDisabled: return "clock_disabled";
    case ErrorCode::kAccountNotFound: return "account_not_found";
    case ErrorCode::kHoldNotFound: return "hold_not_found";
    case ErrorCode::kChargeNotFound: return "charge_not_found";
    case ErrorCode::kKeyNotFound: return "key_not_found";
    case ErrorCode::kNotFound: return "not_found";
    case ErrorCode::kAccountExists: return "account_exists";
    case ErrorCode::kHoldNotOpen: return "hold_not_open";
    case ErrorCode::kAccountClosed: return "account_closed";
    case ErrorCode::kClockBackwards: return "clock_backwards";
    case ErrorCode::kChargeNotRefundable: return "charge_not_refundable";
    case ErrorCode::kLimitReached: return "limit_reached";
    case ErrorCode::kBackfillOutOfOrder: return "backfill_out_of_order";
    case ErrorCode::kBodyTooLarge: return "body_too_large";
    case ErrorCode::kIdempotencyKeyReused: return "idempotency_key_reused";
    case ErrorCode::kRateLimited: return "rate_limited";
    case ErrorCode::kOverloaded: return "overloaded";
    case ErrorCode::kShuttingDown: return "shutting_down";
    case ErrorCode::kStorageFailed: return "storage_failed";
    case ErrorCode::kIdempotencyCapacity: return "idempotency_capacity";
  }
  return "internal";
}

int error_code_http_status(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk: return 200;
    case ErrorCode::kInvalidJson:
    case ErrorCode::kInvalidRequest:
    case ErrorCode::kInvalidAmount:
    case ErrorCode::kInvalidUsage:
    case ErrorCode::kUnknownField:
    case ErrorCode::kTooManyOps:
    case ErrorCode::kCaptureExceedsHold: return 400;
    case ErrorCode::kUnauthorized: return 401;
    case ErrorCode::kInsufficientCredits: return 402;
    case ErrorCode::kForbidden:
    case ErrorCode::kPurchaseNotAllowed:
    case ErrorCode::kClockDisabled: return 403;
    case ErrorCode::kAccountNotFound:
    case ErrorCode::kHoldNotFound:
    case ErrorCode::kChargeNotFound:
    case ErrorCode::kKeyNotFound:
    case ErrorCode::kNotFound: return 404;
    case ErrorCode::kAccountExists:
    case ErrorCode::kHoldNotOpen:
    case ErrorCode::kAccountClosed:
    case ErrorCode::kClockBackwards:
    case ErrorCode::kChargeNotRefundable:
    case ErrorCode::kLimitReached:
    case ErrorCode::kBackfillOutOfOrder: return 409;
    case ErrorCode::kBodyTooLarge: return 413;
    case ErrorCode::kIdempotencyKeyReused: return 422;
    case ErrorCode::kRateLimited: return 429;
    case ErrorCode::kOverloaded:
    case ErrorCode::kShuttingDown:
    case ErrorCode::kStorageFailed:
    case ErrorCode::kIdempotencyCapacity: return 503;
  }
  return 500;
}

Error& Error::with_string(std::string key, std::string_view value) {
  std::string encoded;
  json::append_string(encoded, value);
  details.push_back({std::move(key), std::move(encoded)});
  return *this;
}

std::string_view Error::detail(std::string_view key) const {
  for (const auto& d : details) {
    if (d.key == key) return d.json_value;
  }
  return {};
}

}  // namespace credit
