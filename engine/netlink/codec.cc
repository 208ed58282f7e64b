#include "engine/netlink/codec.h"

#include <linux/netfilter.h>

namespace netpol::netlink {

using nft::FieldType;
using nft::Selector;

uint32_t FieldBytes(FieldType t) {
  switch (t) {
    case FieldType::kIpv4Addr:
      return 4;
    case FieldType::kIpv6Addr:
      return 16;
    case FieldType::kInetProto:
      return 1;
    case FieldType::kInetService:
      return 2;
  }
  return 0;
}

uint32_t FieldTypeId(FieldType t) {
  switch (t) {
    case FieldType::kIpv4Addr:
      return kTypeIpAddr;
    case FieldType::kIpv6Addr:
      return kTypeIp6Addr;
    case FieldType::kInetProto:
      return kTypeInetProtocol;
    case FieldType::kInetService:
      return kTypeInetService;
  }
  return 0;
}

uint32_t FieldSlotBytes(FieldType t, size_t field_count) {
  uint32_t n = FieldBytes(t);
  return field_count > 1 ? (n + 3) / 4 * 4 : n;
}

uint32_t KeyLength(const std::vector<FieldType>& key) {
  uint32_t len = 0;
  for (FieldType t : key) len += FieldSlotBytes(t, key.size());
  return len;
}

uint32_t KeyTypeId(const std::vector<FieldType>& key) {
  uint32_t id = 0;
  for (FieldType t : key) id = (id << kTypeBits) | FieldTypeId(t);
  return id;
}

std::optional<std::vector<FieldType>> FieldsFromTypeId(uint32_t id) {
  std::vector<FieldType> fields;
  if (id == 0) return std::nullopt;
  while (id != 0) {
    switch (id & ((1u << kTypeBits) - 1)) {
      case kTypeIpAddr:
        fields.insert(fields.begin(), FieldType::kIpv4Addr);
        break;
      case kTypeIp6Addr:
        fields.insert(fields.begin(), FieldType::kIpv6Addr);
        break;
      case kTypeInetProtocol:
        fields.insert(fields.begin(), FieldType::kInetProto);
        break;
      case kTypeInetService:
        fields.insert(fields.begin(), FieldType::kInetService);
        break;
      default:
        return std::nullopt;
    }
    id >>= kTypeBits;
  }
  return fields;
}

SelectorLoad LoadOf(Selector s) {
  SelectorLoad l;
  switch (s) {
    case Selector::kIpSaddr:
      l = {false, 0, NFT_PAYLOAD_NETWORK_HEADER, 12, 4, NFPROTO_IPV4};
      break;
    case Selector::kIpDaddr:
      l = {false, 0, NFT_PAYLOAD_NETWORK_HEADER, 16, 4, NFPROTO_IPV4};
      break;
    case Selector::kIp6Saddr:
      l = {false, 0, NFT_PAYLOAD_NETWORK_HEADER, 8, 16, NFPROTO_IPV6};
      break;
    case Selector::kIp6Daddr:
      l = {false, 0, NFT_PAYLOAD_NETWORK_HEADER, 24, 16, NFPROTO_IPV6};
      break;
    case Selector::kL4Proto:
      l = {true, NFT_META_L4PROTO, 0, 0, 1, 0};
      break;
    case Selector::kThDport:
      l = {false, 0, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, 0};
      break;
    case Selector::kCtOrigIpSaddr:
      l.ct = true;
      l.ct_key = NFT_CT_SRC_IP;
      l.len = 4;
      l.nfproto = NFPROTO_IPV4;
      break;
    case Selector::kCtOrigIp6Saddr:
      l.ct = true;
      l.ct_key = NFT_CT_SRC_IP6;
      l.len = 16;
      l.nfproto = NFPROTO_IPV6;
      break;
  }
  return l;
}

uint32_t RegisterForSlot(uint32_t slot) {
  constexpr uint32_t kSlotsPerReg = NFT_REG_SIZE / NFT_REG32_SIZE;  // 4
  if (slot % kSlotsPerReg == 0) return NFT_REG_1 + slot / kSlotsPerReg;
  return NFT_REG32_00 + slot;
}

std::optional<uint32_t> SlotForRegister(uint32_t reg) {
  constexpr uint32_t kSlotsPerReg = NFT_REG_SIZE / NFT_REG32_SIZE;
  if (reg >= NFT_REG_1 && reg <= NFT_REG_4) return (reg - NFT_REG_1) * kSlotsPerReg;
  if (reg >= NFT_REG32_00 && reg <= NFT_REG32_15) return reg - NFT_REG32_00;
  return std::nullopt;
}

int32_t VerdictCode(const nft::Verdict& v) {
  switch (v.kind) {
    case nft::Verdict::Kind::kAccept:
      return NF_ACCEPT;
    case nft::Verdict::Kind::kDrop:
      return NF_DROP;
    case nft::Verdict::Kind::kReturn:
      return NFT_RETURN;
    case nft::Verdict::Kind::kJump:
      return NFT_JUMP;
    case nft::Verdict::Kind::kGoto:
      return NFT_GOTO;
  }
  return NF_DROP;
}

}  // namespace netpol::netlink
