#include "engine/netlink/request.h"

#include <libmnl/libmnl.h>
#include <libnftnl/common.h>
#include <linux/netfilter.h>
#include <string.h>

#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/util/status_macros.h"

namespace netpol::netlink {
namespace {

int ExtAckCb(const struct nlattr* attr, void* data) {
  auto* e = static_cast<KernelError*>(data);
  switch (mnl_attr_get_type(attr)) {
    case NLMSGERR_ATTR_MSG:
      if (mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) >= 0) e->message = mnl_attr_get_str(attr);
      break;
    case NLMSGERR_ATTR_OFFS:
      if (mnl_attr_validate(attr, MNL_TYPE_U32) >= 0) e->offset = mnl_attr_get_u32(attr);
      break;
    default:
      break;
  }
  return MNL_CB_OK;
}

}  // namespace

absl::StatusCode CodeForErrno(int err) {
  switch (err) {
    case ENOENT:
      return absl::StatusCode::kNotFound;
    case EEXIST:
      return absl::StatusCode::kAlreadyExists;
    case EBUSY:
    case EOPNOTSUPP:
      return absl::StatusCode::kFailedPrecondition;
    case EINVAL:
    case ERANGE:
    case E2BIG:
    case EOVERFLOW:
    case ENAMETOOLONG:
    case ELOOP:
    case EMLINK:
      return absl::StatusCode::kInvalidArgument;
    case EPERM:
    case EACCES:
      return absl::StatusCode::kPermissionDenied;
    case ENOSPC:
    case ENFILE:
      return absl::StatusCode::kResourceExhausted;
    case ENOMEM:
    case ENOBUFS:
    case EAGAIN:
    case EINTR:
      return absl::StatusCode::kUnavailable;
    default:
      return absl::StatusCode::kUnknown;
  }
}

std::optional<KernelError> ParseError(const nlmsghdr* nlh) {
  if (nlh->nlmsg_len < NLMSG_LENGTH(sizeof(nlmsgerr))) return std::nullopt;
  const auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
  KernelError e;
  e.seq = err->msg.nlmsg_seq;
  e.error = -err->error;
  if (nlh->nlmsg_flags & NLM_F_ACK_TLVS) {
    // The TLVs follow the echoed request: only its header when the ACK is capped.
    size_t echoed = (nlh->nlmsg_flags & NLM_F_CAPPED) ? sizeof(nlmsghdr) : err->msg.nlmsg_len;
    size_t off = NLMSG_HDRLEN + sizeof(int) + NLMSG_ALIGN(echoed);
    if (off < nlh->nlmsg_len) {
      mnl_attr_parse_payload(reinterpret_cast<const char*>(nlh) + off, nlh->nlmsg_len - off,
                             ExtAckCb, &e);
    }
  }
  return e;
}

absl::Status ErrnoStatus(const std::string& what, int err) {
  return absl::Status(CodeForErrno(err), absl::StrCat(what, ": ", strerror(err)));
}

absl::Status Request(NetlinkSocket* sock, uint32_t seq, uint16_t type, bool dump, int timeout_ms,
                     const std::function<void(nlmsghdr*)>& payload,
                     const std::function<absl::Status(const nlmsghdr*)>& on_msg,
                     bool* interrupted) {
  char buf[kRequestBytes];
  uint16_t flags = dump ? NLM_F_DUMP : NLM_F_ACK;
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(buf, type, NFPROTO_INET, flags, seq);
  if (payload) payload(nlh);
  RETURN_IF_ERROR(sock->Send(nlh, nlh->nlmsg_len));
  std::vector<char> rx;
  for (;;) {
    RETURN_IF_ERROR(sock->Receive(&rx, timeout_ms));
    int len = static_cast<int>(rx.size());
    for (const nlmsghdr* m = reinterpret_cast<const nlmsghdr*>(rx.data()); mnl_nlmsg_ok(m, len);
         m = mnl_nlmsg_next(m, &len)) {
      if (m->nlmsg_seq != seq) continue;  // a late reply to an abandoned request
      if (m->nlmsg_flags & NLM_F_DUMP_INTR) *interrupted = true;
      if (m->nlmsg_type == NLMSG_DONE) return absl::OkStatus();
      if (m->nlmsg_type == NLMSG_ERROR) {
        std::optional<KernelError> e = ParseError(m);
        if (!e) return absl::UnavailableError("netlink: truncated error message");
        if (e->error != 0) return ErrnoStatus("netlink request", e->error);
        if (!dump) return absl::OkStatus();
        continue;
      }
      if (m->nlmsg_type == NLMSG_NOOP) continue;
      RETURN_IF_ERROR(on_msg(m));
    }
  }
}

}  // namespace netpol::netlink
