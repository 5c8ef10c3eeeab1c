// JSON text checks both simdjson shims make themselves (ext/jsondoc.cc, ext/jsonsplit.cc): the
// tokens On-Demand hands over run to the next structural character, and its accessors take
// some that are not JSON (`0.5e-1;`, `fals\r`), so a number's grammar (RFC 8259 §6) and a
// literal's letters are checked from the text.
#ifndef GATEWAY_JSONTEXT_H
#define GATEWAY_JSONTEXT_H

#include <cstddef>
#include <string_view>

namespace gw_json {

// JSON whitespace (RFC 8259 §2).
inline bool blank(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

inline bool all_blank(std::string_view t) {
  for (char c : t) {
    if (!blank(c)) return false;
  }
  return true;
}

// The text without the whitespace at its end.
inline std::string_view trim_end(std::string_view t) {
  size_t n = t.size();
  while (n > 0 && blank(t[n - 1])) n--;
  return t.substr(0, n);
}

// The length of the JSON number at the start of t, 0 if there is none; *integer tells whether
// it has no fraction or exponent.
inline size_t number_length(std::string_view t, bool *integer) {
  size_t i = 0, n = t.size();
  auto digits = [&]() {
    size_t start = i;
    while (i < n && t[i] >= '0' && t[i] <= '9') i++;
    return i > start;
  };
  *integer = true;
  if (i < n && t[i] == '-') i++;
  if (i < n && t[i] == '0') {
    i++;
  } else if (!digits()) {
    return 0;
  }
  if (i < n && t[i] == '.') {
    *integer = false;
    i++;
    if (!digits()) return 0;
  }
  if (i < n && (t[i] == 'e' || t[i] == 'E')) {
    *integer = false;
    i++;
    if (i < n && (t[i] == '+' || t[i] == '-')) i++;
    if (!digits()) return 0;
  }
  return i;
}

// A token that is one JSON number and whitespace.
inline bool number_token(std::string_view t) {
  bool integer;
  size_t n = number_length(t, &integer);
  return n > 0 && all_blank(t.substr(n));
}

// A token that is the literal `word` (true, false, null) and whitespace.
inline bool atom(std::string_view token, std::string_view word) {
  return token.substr(0, word.size()) == word && all_blank(token.substr(word.size()));
}

}  // namespace gw_json

#endif
