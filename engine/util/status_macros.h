// The project-wide error propagation pair. Low-level code returns absl::Status; callers use
// RETURN_IF_ERROR / ASSIGN_OR_RETURN instead of hand-written `if (!s.ok()) return s;`.
#ifndef NETPOL_ENGINE_UTIL_STATUS_MACROS_H_
#define NETPOL_ENGINE_UTIL_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define NETPOL_CONCAT_INNER_(a, b) a##b
#define NETPOL_CONCAT_(a, b) NETPOL_CONCAT_INNER_(a, b)

// Returns the status from the enclosing function when `expr` is not OK.
#define RETURN_IF_ERROR(expr)                        \
  do {                                               \
    ::absl::Status netpol_status_ = (expr);          \
    if (!netpol_status_.ok()) return netpol_status_; \
  } while (0)

// Evaluates `rexpr` (a StatusOr<T>); on error returns its status, otherwise moves the value into
// `lhs` (which may be a declaration such as `auto x`).
#define ASSIGN_OR_RETURN(lhs, rexpr) \
  NETPOL_ASSIGN_OR_RETURN_IMPL_(NETPOL_CONCAT_(netpol_statusor_, __LINE__), lhs, rexpr)
#define NETPOL_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, rexpr) \
  auto tmp = (rexpr);                                  \
  if (!tmp.ok()) return std::move(tmp).status();       \
  lhs = std::move(tmp).value()

#endif  // NETPOL_ENGINE_UTIL_STATUS_MACROS_H_
