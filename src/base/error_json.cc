#include "base/error_json.h"

#include "base/json_writer.h"

namespace credit {

void append_error_json(std::string& out, const Error& error) {
  json::Writer w(out);
  w.begin_object().key("error").begin_object();
  w.key("code").string(error_code_name(error.code));
  w.key("message").string(error.message);
  for (const auto& d : error.details) w.key(d.key).raw(d.json_value);
  w.end_object().end_object();
}

std::string error_json(const Error& error) {
  std::string out;
  append_error_json(out, error);
  return out;
}

}  // namespace credit
