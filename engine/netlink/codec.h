// Shared vocabulary of the encoder and the decoder: how netpol's program objects map onto
// nftables' netlink representation (data type ids, key layouts, registers, verdict codes), and
// owning pointers for libnftnl objects. Internal to engine/netlink.
//
// The mapping follows what nft 1.0.6 generates for the equivalent nft text, so that
// `nft list table` prints our objects back as the text engine/nft renders:
//   * set key types are nft data type ids, concatenated 6 bits per field (TYPE_BITS);
//   * inside a concatenation every field occupies whole 32-bit registers;
//   * `ip saddr`-style loads in an inet table are preceded by a `meta nfproto` dependency.
#ifndef NETPOL_ENGINE_NETLINK_CODEC_H_
#define NETPOL_ENGINE_NETLINK_CODEC_H_

// clang-format off
#include <stdio.h>  // first: libnftnl/expr.h uses FILE without including it
// clang-format on
#include <libnftnl/chain.h>
#include <libnftnl/expr.h>
#include <libnftnl/flowtable.h>
#include <libnftnl/gen.h>
#include <libnftnl/object.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <libnftnl/udata.h>
#include <linux/netfilter/nf_tables.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "engine/nft/program.h"

namespace netpol::netlink {

// Message types newer than the uapi headers Debian 12 ships (Linux 6.1); the kernel knows them
// from 6.3 on. The values continue enum nf_tables_msg_types after NFT_MSG_GETRULE_RESET (25).
inline constexpr uint16_t kMsgDestroyTable = 26;
inline constexpr uint16_t kMsgDestroyChain = 27;
inline constexpr uint16_t kMsgDestroySet = 29;
inline constexpr uint16_t kMsgDestroySetElem = 30;

// nft's data type ids (nftables include/datatype.h enum datatypes) and the shift it uses to
// concatenate them into one set key type (TYPE_BITS).
inline constexpr uint32_t kTypeVerdict = 1;
inline constexpr uint32_t kTypeIpAddr = 7;
inline constexpr uint32_t kTypeIp6Addr = 8;
inline constexpr uint32_t kTypeInetProtocol = 12;
inline constexpr uint32_t kTypeInetService = 13;
inline constexpr int kTypeBits = 6;

// nft's byte order values stored in set user data (nftables enum byteorder).
inline constexpr uint32_t kByteorderInvalid = 0;
inline constexpr uint32_t kByteorderBigEndian = 2;
// nft's expression type id of a concatenation (nftables enum expr_types: EXPR_CONCAT), which
// nft 1.0.6 records as the `typeof` of every concatenated set key.
inline constexpr uint32_t kExprConcat = 13;

// An interface name fits IFNAMSIZ (16) with its terminating NUL.
inline constexpr size_t kIfnameSize = 16;
// Conntrack state bits (linux/netfilter/nf_conntrack_common.h, NF_CT_STATE_*).
inline constexpr uint32_t kCtInvalid = 1u << 0;
inline constexpr uint32_t kCtEstablished = 1u << 1;
inline constexpr uint32_t kCtRelated = 1u << 2;
inline constexpr uint32_t kCtNew = 1u << 3;
inline constexpr uint32_t kCtUntracked = 1u << 6;
// RTN_LOCAL: the address type `fib ... type local` compares with.
inline constexpr uint32_t kRtnLocal = 2;
// IPPROTO_ICMPV6.
inline constexpr uint8_t kProtoIcmpv6 = 58;

// The size of one field's value in bytes: 4, 16, 1 or 2.
uint32_t FieldBytes(nft::FieldType t);
// nft's data type id of a field.
uint32_t FieldTypeId(nft::FieldType t);
// Bytes a field occupies in a key of `field_count` fields: its size, rounded up to 4 inside a
// concatenation.
uint32_t FieldSlotBytes(nft::FieldType t, size_t field_count);
// The set key length (NFTA_SET_KEY_LEN) and type (NFTA_SET_KEY_TYPE) of a key.
uint32_t KeyLength(const std::vector<nft::FieldType>& key);
uint32_t KeyTypeId(const std::vector<nft::FieldType>& key);
// Splits a (concatenated) key type id back into fields; nullopt for ids we do not use.
std::optional<std::vector<nft::FieldType>> FieldsFromTypeId(uint32_t id);

// How a selector is loaded: a payload at (base, offset, len), a meta key or a conntrack key of
// the original direction; and the nfproto (NFPROTO_IPV4/IPV6) that must hold first, or 0.
struct SelectorLoad {
  bool meta = false;
  uint32_t meta_key = 0;
  uint32_t base = 0, offset = 0, len = 0;
  uint8_t nfproto = 0;
  bool ct = false;
  uint32_t ct_key = 0;  // ct only; direction original
};
SelectorLoad LoadOf(nft::Selector s);

// Registers. The encoder counts 32-bit register slots from the start of NFT_REG_1; like nft it
// writes a slot that starts a 128-bit register under that register's legacy number
// (NFT_REG_1..4) and every other slot as NFT_REG32_nn.
uint32_t RegisterForSlot(uint32_t slot);
// The slot a netlink register number denotes; nullopt for the verdict register or bad numbers.
std::optional<uint32_t> SlotForRegister(uint32_t reg);
// The kernel's register file holds 16 32-bit slots (NFT_REG32_COUNT).
inline constexpr uint32_t kRegisterSlots = 16;

// nftables verdict codes for a Verdict (NF_ACCEPT, NF_DROP, NFT_RETURN, NFT_JUMP, NFT_GOTO).
int32_t VerdictCode(const nft::Verdict& v);

// Returns `s`, or "" for null (libnftnl returns null for attributes a message lacked).
inline std::string Str(const char* s) { return s != nullptr ? s : ""; }

// Owning pointers for libnftnl objects.
struct NftnlDeleter {
  void operator()(nftnl_table* p) const { nftnl_table_free(p); }
  void operator()(nftnl_chain* p) const { nftnl_chain_free(p); }
  void operator()(nftnl_rule* p) const { nftnl_rule_free(p); }
  void operator()(nftnl_set* p) const { nftnl_set_free(p); }
  void operator()(nftnl_set_elem* p) const { nftnl_set_elem_free(p); }
  void operator()(nftnl_gen* p) const { nftnl_gen_free(p); }
  void operator()(nftnl_udata_buf* p) const { nftnl_udata_buf_free(p); }
  void operator()(nftnl_obj* p) const { nftnl_obj_free(p); }
  void operator()(nftnl_flowtable* p) const { nftnl_flowtable_free(p); }
};
using TablePtr = std::unique_ptr<nftnl_table, NftnlDeleter>;
using ChainPtr = std::unique_ptr<nftnl_chain, NftnlDeleter>;
using RulePtr = std::unique_ptr<nftnl_rule, NftnlDeleter>;
using SetPtr = std::unique_ptr<nftnl_set, NftnlDeleter>;
using SetElemPtr = std::unique_ptr<nftnl_set_elem, NftnlDeleter>;
using GenPtr = std::unique_ptr<nftnl_gen, NftnlDeleter>;
using UdataPtr = std::unique_ptr<nftnl_udata_buf, NftnlDeleter>;
using ObjPtr = std::unique_ptr<nftnl_obj, NftnlDeleter>;
using FlowtablePtr = std::unique_ptr<nftnl_flowtable, NftnlDeleter>;

}  // namespace netpol::netlink

#endif  // NETPOL_ENGINE_NETLINK_CODEC_H_
