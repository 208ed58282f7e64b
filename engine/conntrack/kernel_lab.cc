// See kernel_lab.h.
#include "engine/conntrack/kernel_lab.h"

#include <algorithm>
#include <cstdio>
#include <memory>

#include "engine/conntrack/conntrack.h"
#include "engine/util/skip_or_fail.h"
#include "gtest/gtest.h"

namespace netpol::conntrack::lab {

CmdResult Sh(const std::string& cmd) {
  CmdResult r;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  r.status = pclose(p);
  return r;
}

CmdResult Nft(const std::string& script) {
  char path[] = "/tmp/netpol-conntrack-test-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return CmdResult{-1, "mkstemp failed"};
  (void)!write(fd, script.data(), script.size());
  close(fd);
  CmdResult r = Sh(absl::StrCat("nft -f ", path));
  unlink(path);
  return r;
}

const char kShopPods[] = R"(
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Pod
metadata: {namespace: shop, name: client, labels: {app: client}}
spec: {nodeName: n1}
status:
  podIPs: [{ip: 10.1.0.2}, {ip: "fd00:1::2"}]
---
apiVersion: v1
kind: Pod
metadata: {namespace: shop, name: server, labels: {app: server}}
spec: {nodeName: n1}
status:
  podIPs: [{ip: 10.2.0.2}, {ip: "fd00:2::2"}]
)";

std::string ShopServerPolicy(const std::string& ports) {
  return absl::StrCat(R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {namespace: shop, name: server}
spec:
  podSelector: {matchLabels: {app: server}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: client}}}]
    ports: )", ports, "\n");
}

void KernelLabTest::SetUp() {
  if (geteuid() != 0) NETPOL_SKIP_OR_FAIL("needs root to create network namespaces");
  CmdResult nft = Sh("nft --version");
  if (nft.status != 0) NETPOL_SKIP_OR_FAIL("nft not available: " << nft.output);
  ASSERT_EQ(lab_.Setup(), "");
}

std::vector<std::string> Flows(Family family) {
  absl::StatusOr<std::unique_ptr<KernelTable>> table = KernelTable::Open();
  EXPECT_TRUE(table.ok()) << table.status();
  if (!table.ok()) return {};
  absl::StatusOr<std::vector<Entry>> entries = (*table)->Dump(family);
  EXPECT_TRUE(entries.ok()) << entries.status();
  std::vector<std::string> out;
  if (!entries.ok()) return out;
  for (const Entry& e : *entries) {
    Flow f = e.flow;
    std::string text = f.ToString();
    const std::string sport = absl::StrCat(":", f.sport, " ");
    size_t at = text.find(sport);
    if (f.has_ports && at != std::string::npos) text.replace(at, sport.size(), ":* ");
    out.push_back(text);
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace netpol::conntrack::lab
