#include "benchmarks/floor/floor.h"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <set>

#include "absl/strings/str_cat.h"

namespace netpol::bench {
namespace {

// nft's data type ids (nftables src/datatype.h) and the concatenation shift.
constexpr uint32_t kTypeIpv4 = 7, kTypeIpv6 = 8, kTypeProto = 12, kTypeService = 13;
constexpr int kTypeBits = 6;
// Room reserved for one message; the element list nest itself must stay below 64 KiB (a u16
// attribute length), so a message is closed at kMaxNest bytes of elements.
constexpr size_t kMessageRoom = 128 * 1024;
constexpr size_t kMaxNest = 60 * 1024;

uint32_t TypeId(nft::FieldType t) {
  switch (t) {
    case nft::FieldType::kIpv4Addr: return kTypeIpv4;
    case nft::FieldType::kIpv6Addr: return kTypeIpv6;
    case nft::FieldType::kInetProto: return kTypeProto;
    case nft::FieldType::kInetService: return kTypeService;
  }
  return 0;
}

size_t Bytes(nft::FieldType t) {
  switch (t) {
    case nft::FieldType::kIpv4Addr: return 4;
    case nft::FieldType::kIpv6Addr: return 16;
    case nft::FieldType::kInetProto: return 1;
    case nft::FieldType::kInetService: return 2;
  }
  return 0;
}

// A field's slot in the key: padded to a 4-byte register in concatenations.
size_t Slot(nft::FieldType t, size_t fields) {
  return fields > 1 ? (Bytes(t) + 3) / 4 * 4 : Bytes(t);
}

void PutKey(const nft::Set& set, const nft::Element& e, bool end, std::string* out) {
  out->clear();
  for (size_t i = 0; i < set.key.size(); ++i) {
    const nft::FieldType t = set.key[i];
    const nft::FieldValue& v = e.key[i];
    const size_t start = out->size();
    out->resize(start + Slot(t, set.key.size()), '\0');
    char* p = &(*out)[start];
    switch (t) {
      case nft::FieldType::kIpv4Addr:
        memcpy(p, (end ? v.addr_hi : v.addr_lo).bytes.data(), 4);
        break;
      case nft::FieldType::kIpv6Addr:
        memcpy(p, (end ? v.addr_hi : v.addr_lo).bytes.data(), 16);
        break;
      case nft::FieldType::kInetProto:
        p[0] = static_cast<char>(end ? v.hi : v.lo);
        break;
      case nft::FieldType::kInetService: {
        uint16_t port = htons(static_cast<uint16_t>(end ? v.hi : v.lo));
        memcpy(p, &port, 2);
        break;
      }
    }
  }
}

int VerdictCode(const nft::Verdict& v) {
  switch (v.kind) {
    case nft::Verdict::Kind::kAccept: return NF_ACCEPT;
    case nft::Verdict::Kind::kDrop: return NF_DROP;
    case nft::Verdict::Kind::kReturn: return NFT_RETURN;
    case nft::Verdict::Kind::kJump: return NFT_JUMP;
    case nft::Verdict::Kind::kGoto: return NFT_GOTO;
  }
  return NF_ACCEPT;
}

class Writer {
 public:
  explicit Writer(uint32_t seq) : seq_(seq) {}
  char* Room() {
    if (buf_.size() < used_ + kMessageRoom) buf_.resize(used_ + kMessageRoom + buf_.size() / 2);
    return buf_.data() + used_;
  }
  void Done() { used_ += NLMSG_ALIGN(reinterpret_cast<nlmsghdr*>(buf_.data() + used_)->nlmsg_len); }
  nlmsghdr* Start(uint16_t type, uint16_t flags) {
    ++messages_;
    last_seq_ = seq_;
    return nftnl_nlmsg_build_hdr(Room(), type, NFPROTO_INET, flags, seq_++);
  }
  void Begin() {
    nftnl_batch_begin(Room(), seq_++);
    Done();
  }
  FloorBatch End(size_t elements) {
    // Only the last command asks for an ACK: the kernel reports any failure anyway.
    if (last_header_.has_value()) {
      reinterpret_cast<nlmsghdr*>(buf_.data() + *last_header_)->nlmsg_flags |= NLM_F_ACK;
    }
    nftnl_batch_end(Room(), seq_++);
    Done();
    FloorBatch b;
    buf_.resize(used_);
    b.bytes = std::move(buf_);
    b.messages = messages_;
    b.elements = elements;
    b.last_seq = last_seq_;
    return b;
  }
  // Closes a command message started at the current offset.
  void Close() {
    last_header_ = used_;
    Done();
  }

 private:
  std::vector<char> buf_;
  size_t used_ = 0;
  uint32_t seq_;
  uint32_t last_seq_ = 0;
  size_t messages_ = 0;
  std::optional<size_t> last_header_;
};

}  // namespace

absl::StatusOr<FloorBatch> EncodeFloor(const nft::Program& program, const std::string& table,
                                       uint32_t first_seq) {
  Writer w(first_seq);
  w.Begin();
  {
    nftnl_table* t = nftnl_table_alloc();
    nftnl_table_set_u32(t, NFTNL_TABLE_FAMILY, NFPROTO_INET);
    nftnl_table_set_str(t, NFTNL_TABLE_NAME, table.c_str());
    nlmsghdr* nlh = w.Start(NFT_MSG_NEWTABLE, NLM_F_CREATE);
    nftnl_table_nlmsg_build_payload(nlh, t);
    nftnl_table_free(t);
    w.Close();
  }
  // The chains that verdict-map elements jump to, empty.
  std::set<std::string> chains;
  for (const auto& [name, elements] : program.elements) {
    for (const nft::Element& e : elements) {
      if (e.verdict && !e.verdict->chain.empty()) chains.insert(e.verdict->chain);
    }
  }
  for (const std::string& name : chains) {
    nftnl_chain* c = nftnl_chain_alloc();
    nftnl_chain_set_u32(c, NFTNL_CHAIN_FAMILY, NFPROTO_INET);
    nftnl_chain_set_str(c, NFTNL_CHAIN_TABLE, table.c_str());
    nftnl_chain_set_str(c, NFTNL_CHAIN_NAME, name.c_str());
    nlmsghdr* nlh = w.Start(NFT_MSG_NEWCHAIN, NLM_F_CREATE);
    nftnl_chain_nlmsg_build_payload(nlh, c);
    nftnl_chain_free(c);
    w.Close();
  }
  uint32_t set_id = 1;
  size_t total = 0;
  std::string key, key_end;
  for (const auto& [name, set] : program.sets) {
    const bool concat = set.key.size() > 1;
    nftnl_set* s = nftnl_set_alloc();
    nftnl_set_set_u32(s, NFTNL_SET_FAMILY, NFPROTO_INET);
    nftnl_set_set_str(s, NFTNL_SET_TABLE, table.c_str());
    nftnl_set_set_str(s, NFTNL_SET_NAME, name.c_str());
    uint32_t flags = 0, type = 0, len = 0;
    if (set.vmap) flags |= NFT_SET_MAP;
    if (set.interval) flags |= NFT_SET_INTERVAL;
    if (set.interval && concat) flags |= NFT_SET_CONCAT;
    for (nft::FieldType t : set.key) {
      type = (type << kTypeBits) | TypeId(t);
      len += Slot(t, set.key.size());
    }
    nftnl_set_set_u32(s, NFTNL_SET_FLAGS, flags);
    nftnl_set_set_u32(s, NFTNL_SET_KEY_TYPE, type);
    nftnl_set_set_u32(s, NFTNL_SET_KEY_LEN, len);
    if (set.vmap) {
      nftnl_set_set_u32(s, NFTNL_SET_DATA_TYPE, NFT_DATA_VERDICT);
      nftnl_set_set_u32(s, NFTNL_SET_DATA_LEN, 0);
    }
    nftnl_set_set_u32(s, NFTNL_SET_ID, set_id);
    if (set.interval && concat) {
      uint8_t lens[NFT_REG32_COUNT + 1] = {};
      for (size_t i = 0; i < set.key.size(); ++i) lens[i] = static_cast<uint8_t>(Bytes(set.key[i]));
      nftnl_set_set_data(s, NFTNL_SET_DESC_CONCAT, lens, set.key.size());
    }
    nlmsghdr* nlh = w.Start(NFT_MSG_NEWSET, NLM_F_CREATE);
    nftnl_set_nlmsg_build_payload(nlh, s);
    nftnl_set_free(s);
    w.Close();

    auto it = program.elements.find(name);
    if (it == program.elements.end()) {
      ++set_id;
      continue;
    }
    const std::vector<nft::Element>& elements = it->second;
    size_t k = 0;
    while (k < elements.size()) {
      nlmsghdr* m = w.Start(NFT_MSG_NEWSETELEM, NLM_F_CREATE);
      mnl_attr_put_strz(m, NFTA_SET_ELEM_LIST_TABLE, table.c_str());
      mnl_attr_put_strz(m, NFTA_SET_ELEM_LIST_SET, name.c_str());
      mnl_attr_put_u32(m, NFTA_SET_ELEM_LIST_SET_ID, htonl(set_id));
      nlattr* list = mnl_attr_nest_start(m, NFTA_SET_ELEM_LIST_ELEMENTS);
      const uint32_t list_start =
          static_cast<uint32_t>(reinterpret_cast<char*>(list) - reinterpret_cast<char*>(m));
      size_t in_message = 0;
      for (; k < elements.size(); ++k) {
        const nft::Element& e = elements[k];
        if (e.key.size() != set.key.size()) {
          return absl::InvalidArgumentError(absl::StrCat("set ", name, ": element ", k,
                                                         ": key has the wrong field count"));
        }
        const uint32_t before = m->nlmsg_len;
        nlattr* el = mnl_attr_nest_start(m, NFTA_LIST_ELEM);
        PutKey(set, e, false, &key);
        nlattr* nk = mnl_attr_nest_start(m, NFTA_SET_ELEM_KEY);
        mnl_attr_put(m, NFTA_DATA_VALUE, key.size(), key.data());
        mnl_attr_nest_end(m, nk);
        if (set.interval) {
          PutKey(set, e, true, &key_end);
          nlattr* ne = mnl_attr_nest_start(m, NFTA_SET_ELEM_KEY_END);
          mnl_attr_put(m, NFTA_DATA_VALUE, key_end.size(), key_end.data());
          mnl_attr_nest_end(m, ne);
        }
        if (e.verdict) {
          nlattr* data = mnl_attr_nest_start(m, NFTA_SET_ELEM_DATA);
          nlattr* verdict = mnl_attr_nest_start(m, NFTA_DATA_VERDICT);
          mnl_attr_put_u32(m, NFTA_VERDICT_CODE, htonl(static_cast<uint32_t>(VerdictCode(*e.verdict))));
          if (!e.verdict->chain.empty()) {
            mnl_attr_put_strz(m, NFTA_VERDICT_CHAIN, e.verdict->chain.c_str());
          }
          mnl_attr_nest_end(m, verdict);
          mnl_attr_nest_end(m, data);
        }
        mnl_attr_nest_end(m, el);
        if (m->nlmsg_len - list_start > kMaxNest && in_message > 0) {
          m->nlmsg_len = before;  // opens the next message
          break;
        }
        ++in_message;
      }
      mnl_attr_nest_end(m, list);
      total += in_message;
      w.Close();
    }
    ++set_id;
  }
  return w.End(total);
}

FloorBatch EncodeDeleteTable(const std::string& table, uint32_t first_seq) {
  Writer w(first_seq);
  w.Begin();
  nftnl_table* t = nftnl_table_alloc();
  nftnl_table_set_u32(t, NFTNL_TABLE_FAMILY, NFPROTO_INET);
  nftnl_table_set_str(t, NFTNL_TABLE_NAME, table.c_str());
  nlmsghdr* nlh = w.Start(NFT_MSG_DELTABLE, 0);
  nftnl_table_nlmsg_build_payload(nlh, t);
  nftnl_table_free(t);
  w.Close();
  return w.End(0);
}

absl::StatusOr<std::unique_ptr<FloorSocket>> FloorSocket::Open() {
  std::unique_ptr<FloorSocket> s(new FloorSocket());
  s->nl_ = mnl_socket_open(NETLINK_NETFILTER);
  if (s->nl_ == nullptr) return absl::UnavailableError(absl::StrCat("netlink socket: ", strerror(errno)));
  if (mnl_socket_bind(s->nl_, 0, MNL_SOCKET_AUTOPID) < 0) {
    return absl::UnavailableError(absl::StrCat("netlink bind: ", strerror(errno)));
  }
  s->portid_ = mnl_socket_get_portid(s->nl_);
  return s;
}

FloorSocket::~FloorSocket() {
  if (nl_ != nullptr) mnl_socket_close(nl_);
}

absl::Status FloorSocket::Send(const FloorBatch& batch) {
  // The kernel refuses a message larger than the send buffer; grow it (root: *FORCE).
  int size = static_cast<int>(batch.bytes.size() + 65536);
  setsockopt(mnl_socket_get_fd(nl_), SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size);
  int rcv = 4 << 20;
  setsockopt(mnl_socket_get_fd(nl_), SOL_SOCKET, SO_RCVBUFFORCE, &rcv, sizeof rcv);
  if (mnl_socket_sendto(nl_, batch.bytes.data(), batch.bytes.size()) < 0) {
    return absl::UnavailableError(absl::StrCat("sendmsg: ", strerror(errno)));
  }
  std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE * 4);
  while (true) {
    ssize_t n = mnl_socket_recvfrom(nl_, buf.data(), buf.size());
    if (n < 0) return absl::UnavailableError(absl::StrCat("recv: ", strerror(errno)));
    int len = static_cast<int>(n);
    for (nlmsghdr* h = reinterpret_cast<nlmsghdr*>(buf.data()); mnl_nlmsg_ok(h, len);
         h = mnl_nlmsg_next(h, &len)) {
      if (h->nlmsg_type != NLMSG_ERROR) continue;
      const nlmsgerr* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(h));
      if (err->error != 0) {
        return absl::InternalError(absl::StrCat("message ", h->nlmsg_seq, ": ", strerror(-err->error)));
      }
      if (h->nlmsg_seq == batch.last_seq) return absl::OkStatus();
    }
  }
}

}  // namespace netpol::bench
