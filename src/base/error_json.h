// src/base/error_json.h
// The JSON form of an Error, as API.md gives it:
// {"error": {"code": "...", "message": "...", ...details}}.
// Owns: that body, for the server and creditctl alike. Does not: choose the HTTP status or
// headers (server/json_reader.h's error_response).
#pragma once

#include <string>

#include "base/status.h"

namespace credit {

void append_error_json(std::string& out, const Error& error);
std::string error_json(const Error& error);

}  // namespace credit
