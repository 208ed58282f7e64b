// The Kubernetes datastore's list-watch logic (the reflector) without a server: a scripted API
// (FakeApi) stands in for the HTTPS client and serves lists in pages with continue tokens,
// watches from a resourceVersion (replaying history after it, bookmarks, 410 Gone once
// compacted), and cuts streams on command, mid-stream included. The real API server runs in
// datastore_apiserver_test.py and tests/k8s.
#include <algorithm>
#include <array>
#include <atomic>
#include <functional>
#include <map>
#include <set>
#include <tuple>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "agent/k8s/client.h"
#include "agent/k8s/datastore.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace netpol::agent::k8s {
namespace {

using ::testing::ElementsAre;

std::string LabelsJson(const std::map<std::string, std::string>& labels) {
  std::vector<std::string> kv;
  for (const auto& [k, v] : labels) kv.push_back(absl::StrCat("\"", k, "\":\"", v, "\""));
  return absl::StrCat("{", absl::StrJoin(kv, ","), "}");
}

// A query parameter of `path`, empty when absent.
std::string Param(const std::string& path, const std::string& name) {
  const size_t q = path.find('?');
  if (q == std::string::npos) return "";
  for (absl::string_view kv : absl::StrSplit(path.substr(q + 1), '&')) {
    std::pair<std::string, std::string> p = absl::StrSplit(kv, absl::MaxSplits('=', 1));
    if (p.first == name) return p.second;
  }
  return "";
}

Resource ResourceOf(const std::string& path) {
  for (Resource r : kResources) {
    const std::string base = ResourcePath(r);
    if (path.compare(0, base.size(), base) == 0 &&
        (path.size() == base.size() || path[base.size()] == '?')) {
      return r;
    }
  }
  ADD_FAILURE() << "unknown path " << path;
  return Resource::kPods;
}

int Idx(Resource r) { return static_cast<int>(r); }

// The API as the datastore sees it: objects with resourceVersions from one counter, each
// write an event in the resource's history.
class FakeApi : public Client {
 public:
  FakeApi() : Client(ClusterConfig{"https://api.invalid"}) {}

  struct Request {
    Resource resource;
    bool watch;
    std::string path;
  };

  // ---- writes (each one event)
  int64_t SetNamespace(const std::string& name, std::map<std::string, std::string> labels) {
    return Write(Resource::kNamespaces, name, [&](int64_t rv) {
      return absl::StrCat(R"({"metadata":{"name":")", name, R"(","resourceVersion":")", rv,
                          R"(","labels":)", LabelsJson(labels), "}}");
    });
  }
  int64_t SetPod(const std::string& ns, const std::string& name,
                 std::map<std::string, std::string> labels, const std::string& ip) {
    return Write(Resource::kPods, absl::StrCat(ns, "/", name), [&](int64_t rv) {
      return absl::StrCat(R"({"metadata":{"name":")", name, R"(","namespace":")", ns,
                          R"(","resourceVersion":")", rv, R"(","labels":)", LabelsJson(labels),
                          R"(},"spec":{"nodeName":"node-1","containers":[{"name":"c","image":"x"}]},)",
                          R"("status":{"phase":"Running","podIPs":[{"ip":")", ip, R"("}]}})");
    });
  }
  int64_t SetPolicy(const std::string& ns, const std::string& name, int port) {
    return Write(Resource::kNetworkPolicies, absl::StrCat(ns, "/", name), [&](int64_t rv) {
      return absl::StrCat(R"({"metadata":{"name":")", name, R"(","namespace":")", ns,
                          R"(","resourceVersion":")", rv,
                          R"("},"spec":{"podSelector":{},"policyTypes":["Ingress"],)",
                          R"("ingress":[{"ports":[{"protocol":"TCP","port":)", port, "}]}]}}");
    });
  }
  // An Admin-tier ClusterNetworkPolicy denying ingress from namespaces labelled team=`team`
  // (`priority` outside 0-1000 makes one the API server's schema would refuse; served as is).
  int64_t SetClusterPolicy(const std::string& name, int priority, const std::string& team) {
    return Write(Resource::kClusterNetworkPolicies, name, [&](int64_t rv) {
      return absl::StrCat(R"({"apiVersion":"policy.networking.k8s.io/v1alpha2",)",
                          R"("kind":"ClusterNetworkPolicy","metadata":{"name":")", name,
                          R"(","resourceVersion":")", rv, R"(","generation":1},)",
                          R"("spec":{"tier":"Admin","priority":)", priority,
                          R"(,"subject":{"namespaces":{}},"ingress":[{"name":"r0","action":"Deny",)",
                          R"("from":[{"namespaces":{"matchLabels":{"team":")", team,
                          R"("}}}]}]},"status":{"conditions":[]}})");
    });
  }
  // A Node as the kubelet reports it: labels, addresses, and status netpol never reads.
  int64_t SetNode(const std::string& name, std::map<std::string, std::string> labels,
                  const std::string& ip) {
    return Write(Resource::kNodes, name, [&](int64_t rv) {
      return absl::StrCat(R"({"metadata":{"name":")", name, R"(","resourceVersion":")", rv,
                          R"(","labels":)", LabelsJson(labels),
                          R"(},"spec":{"podCIDR":"10.244.1.0/24"},"status":{"addresses":[)",
                          R"({"type":"InternalIP","address":")", ip, R"("},)",
                          R"({"type":"Hostname","address":")", name, R"("}],)",
                          R"("conditions":[{"type":"Ready","status":"True"}],)",
                          R"("images":[{"names":["registry.k8s.io/pause:3.9"],"sizeBytes":1}]}})");
    });
  }
  int64_t Delete(Resource r, const std::string& key) {
    absl::MutexLock l(&mu_);
    auto it = objects_[Idx(r)].find(key);
    if (it == objects_[Idx(r)].end()) return rv_;
    ++rv_;
    // The DELETED event carries the object at the deletion's version.
    std::string json = it->second.second;
    const std::string old = absl::StrCat("\"resourceVersion\":\"", it->second.first, "\"");
    json.replace(json.find(old), old.size(), absl::StrCat("\"resourceVersion\":\"", rv_, "\""));
    history_[Idx(r)].push_back({rv_, "DELETED", json});
    objects_[Idx(r)].erase(it);
    return rv_;
  }

  // ---- the server's behaviour
  // Watches from a version below the current one get 410 Gone from now on.
  void Compact() {
    absl::MutexLock l(&mu_);
    compacted_ = rv_;
  }
  // Open watches of `r` end with a transport error; `after_events` more events are delivered
  // first (0: at once). The cut lands between two lines of one chunk when events are pending.
  void Cut(Resource r, int after_events = 0) {
    absl::MutexLock l(&mu_);
    cut_after_[Idx(r)] = after_events;
  }
  // Events of `r` are held (not sent on any watch) until Release.
  void Hold(Resource r) {
    absl::MutexLock l(&mu_);
    held_[Idx(r)] = true;
  }
  void Release(Resource r) {
    absl::MutexLock l(&mu_);
    held_[Idx(r)] = false;
  }
  // Whether the server serves `r` at all (a CRD installed or not): unserved, lists and watches
  // of it answer 404 as kube-apiserver does for an unknown resource. Open watches go on until
  // cut, as they do while a CRD is being deleted.
  void Serve(Resource r, bool served) {
    absl::MutexLock l(&mu_);
    unserved_[Idx(r)] = !served;
  }
  // Sends a BOOKMARK at the current resourceVersion on the open watches of `r`.
  int64_t Bookmark(Resource r) {
    absl::MutexLock l(&mu_);
    bookmark_[Idx(r)] = rv_;
    return rv_;
  }
  // The next `n` requests of `r` (lists or watches) fail before any response, as a refused
  // connection does.
  void FailNext(Resource r, int n) {
    absl::MutexLock l(&mu_);
    fail_next_[Idx(r)] = n;
  }
  // The next continue request of `r` answers 410 Expired (the list's version was compacted).
  void ExpireNextContinue(Resource r) {
    absl::MutexLock l(&mu_);
    expire_continue_[Idx(r)] = true;
  }

  std::vector<Request> requests() const {
    absl::MutexLock l(&mu_);
    return requests_;
  }
  std::vector<std::string> WatchVersions(Resource r) const {
    std::vector<std::string> out;
    for (const Request& q : requests()) {
      if (q.resource == r && q.watch) out.push_back(Param(q.path, "resourceVersion"));
    }
    return out;
  }
  int64_t rv() const {
    absl::MutexLock l(&mu_);
    return rv_;
  }
  // resourceVersion of the last event each watch delivered before it was cut, in order.
  std::vector<int64_t> LastDeliveredBeforeCuts(Resource r) const {
    absl::MutexLock l(&mu_);
    return cut_at_[Idx(r)];
  }
  // Keys of `r` with their labels' JSON (pods and namespaces) as the API has them.
  std::map<std::string, std::string> Objects(Resource r) const {
    absl::MutexLock l(&mu_);
    std::map<std::string, std::string> out;
    for (const auto& [k, v] : objects_[Idx(r)]) out[k] = v.second;
    return out;
  }

  absl::StatusOr<HttpResponse> Get(const std::string& path, absl::Duration) override {
    const Resource r = ResourceOf(path);
    absl::MutexLock l(&mu_);
    requests_.push_back({r, false, path});
    if (unserved_[Idx(r)]) return HttpResponse{404, "404 page not found\n"};
    if (fail_next_[Idx(r)] > 0) {
      --fail_next_[Idx(r)];
      return absl::UnavailableError("connection refused");
    }
    int limit = 0;
    if (!absl::SimpleAtoi(Param(path, "limit"), &limit) || limit <= 0) limit = 1 << 30;
    const std::string token = Param(path, "continue");
    int64_t at = rv_;
    size_t from = 0;
    if (!token.empty()) {
      std::pair<std::string, std::string> p = absl::StrSplit(token, absl::MaxSplits('-', 1));
      if (!absl::SimpleAtoi(p.first, &at) || !absl::SimpleAtoi(p.second, &from)) {
        return HttpResponse{400, R"({"kind":"Status","message":"bad continue"})"};
      }
      if (expire_continue_[Idx(r)] || !snapshots_.count({Idx(r), at})) {
        expire_continue_[Idx(r)] = false;
        return HttpResponse{410, R"({"kind":"Status","status":"Failure","reason":"Expired",)"
                                 R"("message":"The provided continue parameter is too old","code":410})"};
      }
    } else {
      std::vector<std::string> snap;
      for (const auto& [k, v] : objects_[Idx(r)]) snap.push_back(v.second);
      snapshots_[{Idx(r), at}] = std::move(snap);
    }
    const std::vector<std::string>& snap = snapshots_[{Idx(r), at}];
    const size_t end = std::min(snap.size(), from + static_cast<size_t>(limit));
    std::vector<std::string> items(snap.begin() + std::min(from, snap.size()), snap.begin() + end);
    const std::string next = end < snap.size() ? absl::StrCat(at, "-", end) : "";
    return HttpResponse{200, absl::StrCat(R"({"metadata":{"resourceVersion":")", at,
                                          R"(","continue":")", next, R"("},"items":[)",
                                          absl::StrJoin(items, ","), "]}")};
  }

  absl::StatusOr<HttpResponse> Stream(const std::string& path,
                                      const std::function<bool(absl::string_view)>& on_line,
                                      const std::atomic<bool>* cancel, absl::Duration,
                                      const std::function<void(long)>& on_headers,
                                      const std::function<void()>& on_chunk) override {
    const Resource r = ResourceOf(path);
    const int i = Idx(r);
    int64_t from = 0;
    {
      absl::MutexLock l(&mu_);
      requests_.push_back({r, true, path});
      if (unserved_[i]) return HttpResponse{404, "404 page not found\n"};
      if (fail_next_[i] > 0) {
        --fail_next_[i];
        return absl::UnavailableError("connection refused");
      }
      // A cut requested while no watch was open applies to the next one.
      EXPECT_TRUE(absl::SimpleAtoi(Param(path, "resourceVersion"), &from)) << path;
    }
    if (on_headers) on_headers(200);
    int64_t sent = from;
    std::string gone;
    {
      absl::MutexLock l(&mu_);
      if (from < compacted_) {
        gone = absl::StrCat(
            R"({"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},)",
            R"("status":"Failure","message":"too old resource version: )", from, " (",
            compacted_, ")\",\"reason\":\"Expired\",\"code\":410}}");
      }
    }
    if (!gone.empty()) {
      on_line(gone);
      return HttpResponse{200, ""};
    }
    for (;;) {
      std::vector<std::string> lines;
      int cut = -1;
      {
        absl::MutexLock l(&mu_);
        auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          if (cancel->load() || cut_after_[i] == 0) return true;
          if (bookmark_[i] > sent) return true;
          return !held_[i] && !history_[i].empty() && history_[i].back().rv > sent;
        };
        mu_.AwaitWithTimeout(absl::Condition(&ready), absl::Milliseconds(20));
        if (cancel->load()) return HttpResponse{200, ""};
        if (!held_[i]) {
          for (const Event& e : history_[i]) {
            if (e.rv <= sent) continue;
            lines.push_back(absl::StrCat(R"({"type":")", e.type, R"(","object":)", e.json, "}"));
          }
        }
        if (lines.empty() && bookmark_[i] > sent) {
          lines.push_back(absl::StrCat(
              R"({"type":"BOOKMARK","object":{"kind":"X","apiVersion":"v1","metadata":{"resourceVersion":")",
              bookmark_[i], R"("}}})"));
        }
        if (cut_after_[i] >= 0) {
          cut = std::min<int>(cut_after_[i], lines.size());
          cut_after_[i] -= cut;
          if (cut_after_[i] > 0) cut = -1;  // not yet: these lines all go out
        }
      }
      const size_t n = cut >= 0 ? static_cast<size_t>(cut) : lines.size();
      for (size_t k = 0; k < n; ++k) {
        absl::StatusOr<WatchEvent> e = DecodeWatchEvent(r, lines[k]);
        if (e.ok() && !e->item.resource_version.empty()) {
          int64_t v = 0;
          if (absl::SimpleAtoi(e->item.resource_version, &v)) sent = v;
        }
        if (!on_line(lines[k])) return HttpResponse{200, ""};
      }
      if (cut >= 0) {
        // Mid-stream: the lines before the cut arrived, the chunk never completed.
        absl::MutexLock l(&mu_);
        cut_after_[i] = -1;
        cut_at_[i].push_back(sent);
        return absl::UnavailableError("connection reset by peer (mid-stream)");
      }
      if (n > 0 && on_chunk) on_chunk();
    }
  }

 private:
  struct Event {
    int64_t rv;
    std::string type;
    std::string json;
  };

  int64_t Write(Resource r, const std::string& key,
                const std::function<std::string(int64_t)>& json) {
    absl::MutexLock l(&mu_);
    ++rv_;
    auto& objs = objects_[Idx(r)];
    const bool exists = objs.count(key) > 0;
    objs[key] = {rv_, json(rv_)};
    history_[Idx(r)].push_back({rv_, exists ? "MODIFIED" : "ADDED", objs[key].second});
    return rv_;
  }

  mutable absl::Mutex mu_;
  int64_t rv_ ABSL_GUARDED_BY(mu_) = 100;
  int64_t compacted_ ABSL_GUARDED_BY(mu_) = 0;
  std::array<std::map<std::string, std::pair<int64_t, std::string>>, kResourceCount> objects_
      ABSL_GUARDED_BY(mu_);
  std::array<std::vector<Event>, kResourceCount> history_ ABSL_GUARDED_BY(mu_);
  std::map<std::pair<int, int64_t>, std::vector<std::string>> snapshots_ ABSL_GUARDED_BY(mu_);
  std::array<int, kResourceCount> cut_after_ ABSL_GUARDED_BY(mu_) = {-1, -1, -1, -1, -1};
  std::array<std::vector<int64_t>, kResourceCount> cut_at_ ABSL_GUARDED_BY(mu_);
  std::array<bool, kResourceCount> held_ ABSL_GUARDED_BY(mu_) = {};
  std::array<int64_t, kResourceCount> bookmark_ ABSL_GUARDED_BY(mu_) = {};
  std::array<int, kResourceCount> fail_next_ ABSL_GUARDED_BY(mu_) = {};
  std::array<bool, kResourceCount> expire_continue_ ABSL_GUARDED_BY(mu_) = {};
  std::array<bool, kResourceCount> unserved_ ABSL_GUARDED_BY(mu_) = {};
  std::vector<Request> requests_ ABSL_GUARDED_BY(mu_);
};

struct Fixture {
  FakeApi* api = nullptr;
  std::unique_ptr<KubernetesDatastore> ds;
  std::vector<absl::Duration> backoffs;
  absl::Mutex mu;

  explicit Fixture(int page_size = 500, absl::Duration retry_min = absl::Milliseconds(1),
                   absl::Duration retry_max = absl::Milliseconds(8)) {
    auto fake = std::make_unique<FakeApi>();
    api = fake.get();
    DatastoreOptions o;
    o.cluster.server = "https://api.invalid";
    o.page_size = page_size;
    o.retry_min = retry_min;
    o.retry_max = retry_max;
    o.seed = 7;
    o.on_backoff = [this](absl::Duration d) {
      absl::MutexLock l(&mu);
      backoffs.push_back(d);
    };
    absl::StatusOr<std::unique_ptr<KubernetesDatastore>> d =
        KubernetesDatastore::Create(std::move(o), std::move(fake));
    EXPECT_TRUE(d.ok()) << d.status();
    ds = std::move(*d);
  }
  ~Fixture() { ds->Stop(); }

  std::vector<absl::Duration> Backoffs() {
    absl::MutexLock l(&mu);
    return backoffs;
  }
  // Waits (bounded, to fail rather than hang) until `pred` holds for the published State.
  template <typename Pred>
  bool Until(Pred pred, absl::Duration timeout = absl::Seconds(20)) {
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      if (pred()) return true;
      absl::SleepFor(absl::Milliseconds(1));
    }
    return pred();
  }
  std::string PodLabel(const std::string& key, const std::string& label) {
    Snapshot s = ds->Current();
    auto it = s.state->pods.find(key);
    if (it == s.state->pods.end()) return "<absent>";
    auto l = it->second.labels.find(label);
    return l == it->second.labels.end() ? "<none>" : l->second;
  }
  bool HasPod(const std::string& key) {
    Snapshot s = ds->Current();
    return s.state->pods.find(key) != s.state->pods.end();
  }
  std::string WatchVersion(Resource r) {
    return ds->status().resources[Idx(r)].resource_version;
  }
  // Pod keys touched by each generation in (from, to].
  std::vector<std::set<std::string>> PodChangesPerGeneration(uint64_t from, uint64_t to) {
    std::vector<std::set<std::string>> out;
    for (uint64_t g = from; g < to; ++g) {
      std::optional<ChangedKeys> c = ds->ChangesBetween(g, g + 1);
      EXPECT_TRUE(c.has_value()) << g;
      if (c) out.push_back(c->pods);
    }
    return out;
  }
};

void Seed(FakeApi& api, int pods) {
  api.SetNamespace("shop", {{"team", "a"}});
  api.SetNamespace("ops", {});
  api.SetNamespace("web", {});
  for (int i = 0; i < pods; ++i) {
    api.SetPod("shop", absl::StrCat("p", i), {{"app", "web"}}, absl::StrCat("10.0.0.", i + 1));
  }
  api.SetPolicy("shop", "allow-80", 80);
}

TEST(ReflectorTest, ListsInPagesFollowingContinueTokens) {
  Fixture f(/*page_size=*/2);
  Seed(*f.api, 5);
  f.ds->Start();
  ASSERT_TRUE(f.ds->WaitSynced(absl::Seconds(20)));
  Snapshot s = f.ds->Current();
  EXPECT_EQ(s.state->pods.size(), 5u);
  EXPECT_EQ(s.state->policies.size(), 1u);
  // One generation for the five lists together.
  EXPECT_EQ(s.generation, 1u);
  std::vector<std::string> pod_lists;
  for (const FakeApi::Request& q : f.api->requests()) {
    if (q.resource == Resource::kPods && !q.watch) pod_lists.push_back(q.path);
  }
  // 5 pods in pages of 2: three requests, each after the first with the previous continue.
  ASSERT_EQ(pod_lists.size(), 3u);
  const std::string list_rv = absl::StrCat(f.api->rv());
  EXPECT_EQ(Param(pod_lists[0], "limit"), "2");
  EXPECT_EQ(Param(pod_lists[0], "continue"), "");
  EXPECT_EQ(Param(pod_lists[1], "continue"), absl::StrCat(list_rv, "-2"));
  EXPECT_EQ(Param(pod_lists[2], "continue"), absl::StrCat(list_rv, "-4"));
  // namespaces 3 -> 2 pages, pods 3, policies 1, cluster network policies 1 (empty), nodes 1.
  EXPECT_EQ(f.ds->status().pages, 8);
  // The watch starts from the list's resourceVersion.
  ASSERT_TRUE(f.Until([&] { return !f.api->WatchVersions(Resource::kPods).empty(); }));
  EXPECT_EQ(f.api->WatchVersions(Resource::kPods)[0], list_rv);
  for (const FakeApi::Request& q : f.api->requests()) {
    if (q.watch) {
      EXPECT_EQ(Param(q.path, "allowWatchBookmarks"), "true") << q.path;
    }
  }
}

TEST(ReflectorTest, ExpiredContinueTokenRestartsTheList) {
  Fixture f(/*page_size=*/2);
  Seed(*f.api, 5);
  f.api->ExpireNextContinue(Resource::kPods);
  f.ds->Start();
  ASSERT_TRUE(f.ds->WaitSynced(absl::Seconds(20)));
  EXPECT_EQ(f.ds->Current().state->pods.size(), 5u);
  std::vector<std::string> conts;
  for (const FakeApi::Request& q : f.api->requests()) {
    if (q.resource == Resource::kPods && !q.watch) conts.push_back(Param(q.path, "continue"));
  }
  // First page, its continue (410), then the whole list again from the first page.
  ASSERT_EQ(conts.size(), 5u);
  EXPECT_EQ(conts[0], "");
  EXPECT_NE(conts[1], "");
  EXPECT_EQ(conts[2], "");
  EXPECT_NE(conts[3], "");
  EXPECT_NE(conts[4], "");
}

TEST(ReflectorTest, BookmarkAdvancesTheResourceVersionAWatchResumesFrom) {
  Fixture f;
  Seed(*f.api, 3);
  f.ds->Start();
  ASSERT_TRUE(f.ds->WaitSynced(absl::Seconds(20)));
  ASSERT_TRUE(f.Until([&] { return f.api->WatchVersions(Resource::kPods).size() == 1; }));
  const uint64_t gen = f.ds->Current().generation;
  // Other resources move the version on; the pods' watch only learns it from a bookmark.
  f.api->SetNamespace("other", {});
  f.api->SetPolicy("shop", "more", 443);
  const int64_t mark = f.api->Bookmark(Resource::kPods);
  ASSERT_TRUE(f.Until([&] { return f.WatchVersion(Resource::kPods) == absl::StrCat(mark); }))
      << f.WatchVersion(Resource::kPods);
  f.api->Cut(Resource::kPods);
  ASSERT_TRUE(f.Until([&] { return f.api->WatchVersions(Resource::kPods).size() >= 2; }));
  EXPECT_EQ(f.api->WatchVersions(Resource::kPods)[1], absl::StrCat(mark));
  // A bookmark changes no object: the generations are the namespace's and the policy's.
  ASSERT_TRUE(f.Until([&] { return f.ds->Current().generation == gen + 2; }));
  EXPECT_THAT(f.PodChangesPerGeneration(gen, gen + 2),
              ElementsAre(std::set<std::string>{}, std::set<std::string>{}));
}

TEST(ReflectorTest, GoneRelistsAndPublishesOnlyTheDifferences) {
  Fixture f;
  Seed(*f.api, 4);  // shop/p0..p3
  f.ds->Start();
  ASSERT_TRUE(f.ds->WaitSynced(absl::Seconds(20)));
  // Every resource's watch is open before the compaction: a watch opened after it would get
  // 410 too, and re-list its resource as well.
  for (Resource r : kResources) {
    ASSERT_TRUE(f.Until([&] { return f.api->WatchVersions(r).size() == 1; }));
  }
  const uint64_t gen = f.ds->Current().generation;
  // Changes the watch never sees: held, then compacted away.
  f.api->Hold(Resource::kPods);
  f.api->SetPod("shop", "new", {{"app", "db"}}, "10.0.0.50");     // added
  f.api->SetPod("shop", "p1", {{"app", "db"}}, "10.0.0.2");       // labels changed
  f.api->Delete(Resource::kPods, "shop/p2");                       // deleted
  f.api->SetPod("shop", "p3", {{"app", "x"}}, "10.0.0.4");        // changed ...
  f.api->SetPod("shop", "p3", {{"app", "web"}}, "10.0.0.4");      // ... and back: same object
  f.api->Compact();
  f.api->Cut(Resource::kPods);
  f.api->Release(Resource::kPods);
  ASSERT_TRUE(f.Until([&] { return f.ds->status().relists == 1; }));
  ASSERT_TRUE(f.Until([&] { return f.HasPod("shop/new"); }));
  const uint64_t now = f.ds->Current().generation;
  // One generation, with exactly the objects that differ (p0 and p3 untouched).
  ASSERT_EQ(now, gen + 1);
  std::optional<ChangedKeys> c = f.ds->ChangesBetween(gen, now);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->pods, (std::set<std::string>{"shop/new", "shop/p1", "shop/p2"}));
  EXPECT_TRUE(c->namespaces.empty());
  EXPECT_TRUE(c->policies.empty());
  EXPECT_EQ(f.PodLabel("shop/p1", "app"), "db");
  EXPECT_FALSE(f.HasPod("shop/p2"));
  EXPECT_EQ(f.PodLabel("shop/p3", "app"), "web");
  // The watch resumes from the re-list's version, and later events apply as usual.
  const std::string relist_rv = f.WatchVersion(Resource::kPods);
  ASSERT_TRUE(f.Until([&] { return f.api->WatchVersions(Resource::kPods).size() >= 3; }));
  EXPECT_EQ(f.api->WatchVersions(Resource::kPods).back(), relist_rv);
  f.api->SetPod("shop", "p0", {{"app", "api"}}, "10.0.0.1");
  ASSERT_TRUE(f.Until([&] { return f.PodLabel("shop/p0", "app") == "api"; }));
}

bool HasClusterPolicy(Fixture& f, const std::string& name, int priority = -1) {
  Snapshot s = f.ds->Current();
  auto it = s.state->cluster_policies.find(name);
  return it != s.state->cluster_policies.end() && (priority < 0 || it->second.priority == priority);
}

TEST(ReflectorTest, ClusterNetworkPoliciesAndNodesAreListedAndWatchedInvalidOnesSkipped) {
  Fixture f;
  Seed(*f.api, 2);
  f.api->SetClusterPolicy("guard", 10, "a");
  f.api->SetClusterPolicy("too-high", 1001, "a");  // accepted by the fake API, not by netpol
  f.api->SetNode("node-1", {{"zone", "a"}}, "192.168.0.1");
  f.ds->Start();
  ASSERT_TRUE(f.ds->WaitSynced(absl::Seconds(20)));
  Snapshot s = f.ds->Current();
  EXPECT_EQ(s.generation, 1u);  // with the other lists, one snapshot
  ASSERT_EQ(s.state->cluster_policies.size(), 1u);
  const ClusterNetworkPolicy& guard = s.state->cluster_policies.begin()->second;
  EXPECT_EQ(guard.name, "guard");
  EXPECT_EQ(guard.priority, 10);
  ASSERT_EQ(guard.ingress.size(), 1u);
  EXPECT_EQ(guard.ingress[0].action, CnpAction::kDeny);
  ASSERT_EQ(s.state->nodes.size(), 1u);
  const Node& node = s.state->nodes.begin()->second;
  EXPECT_EQ(node.name, "node-1");
  EXPECT_EQ(node.labels, (Labels{{"zone", "a"}}));
  ASSERT_EQ(node.ips.size(), 1u);  // the Hostname entry is a name, not an address
  EXPECT_EQ(node.ips[0].ToString(), "192.168.0.1");
  // The invalid one is reported with its field path and left out; the rest syncs.
  const std::vector<std::string> invalid = f.ds->status().invalid;
  ASSERT_EQ(invalid.size(), 1u);
  EXPECT_THAT(invalid[0], ::testing::HasSubstr("clusternetworkpolicy too-high: spec.priority"));
  for (Resource r : kResources) {
    ASSERT_TRUE(f.Until([&] { return f.ds->status().resources[Idx(r)].watching; }))
        << ResourceName(r);
  }

  // Watch events: element-level changes of the two kinds.
  uint64_t gen = f.ds->Current().generation;
  f.api->SetClusterPolicy("guard", 20, "a");
  ASSERT_TRUE(f.Until([&] { return HasClusterPolicy(f, "guard", 20); }));
  std::optional<ChangedKeys> c = f.ds->ChangesBetween(gen, f.ds->Current().generation);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->cluster_policies, (std::set<std::string>{"guard"}));
  EXPECT_TRUE(c->pods.empty() && c->nodes.empty());
  gen = f.ds->Current().generation;
  f.api->SetNode("node-1", {{"zone", "b"}}, "192.168.0.1");
  ASSERT_TRUE(f.Until([&] {
    Snapshot now = f.ds->Current();
    auto it = now.state->nodes.find("node-1");
    return it != now.state->nodes.end() && it->second.labels.at("zone") == "b";
  }));
  c = f.ds->ChangesBetween(gen, f.ds->Current().generation);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->nodes, (std::set<std::string>{"node-1"}));
  EXPECT_TRUE(c->cluster_policies.empty());
  // The invalid one fixed enters the model; deletes leave it.
  f.api->SetClusterPolicy("too-high", 1000, "a");
  ASSERT_TRUE(f.Until([&] { return HasClusterPolicy(f, "too-high", 1000); }));
  EXPECT_TRUE(f.ds->status().invalid.empty());
  f.api->Delete(Resource::kClusterNetworkPolicies, "guard");
  f.api->Delete(Resource::kNodes, "node-1");
  ASSERT_TRUE(f.Until([&] {
    return !HasClusterPolicy(f, "guard") && f.ds->Current().state->nodes.empty();
  }));
  EXPECT_TRUE(HasClusterPolicy(f, "too-high"));
}

TEST(ReflectorTest, WithoutTheCrdTheOtherResourcesSyncAndItIsWatchedOnceInstalled) {
  Fixture f;
  Seed(*f.api, 2);
  f.api->Serve(Resource::kClusterNetworkPolicies, false);
  f.ds->Start();
  // The first lists publish without it: no error, nothing to enforce, healthy.
  ASSERT_TRUE(f.ds->WaitSynced(absl::Seconds(20)));
  EXPECT_EQ(f.ds->Current().state->pods.size(), 2u);
  EXPECT_TRUE(f.ds->Current().state->cluster_policies.empty());
  const int cnp = Idx(Resource::kClusterNetworkPolicies);
  EXPECT_TRUE(f.ds->status().resources[cnp].absent);
  EXPECT_TRUE(f.ds->status().resources[cnp].error.ok());
  for (Resource r : {Resource::kNamespaces, Resource::kPods, Resource::kNetworkPolicies,
                     Resource::kNodes}) {
    ASSERT_TRUE(f.Until([&] { return f.ds->status().resources[Idx(r)].watching; }))
        << ResourceName(r);
  }
  DatastoreHealth h = f.ds->Health();
  EXPECT_TRUE(h.watch_connected);
  EXPECT_TRUE(h.healthy);
  EXPECT_TRUE(h.watch_error.ok()) << h.watch_error;
  ASSERT_EQ(h.resources.size(), 5u);
  EXPECT_EQ(h.resources[cnp].resource, "clusternetworkpolicies");
  EXPECT_THAT(std::string(h.resources[cnp].error.message()),
              ::testing::HasSubstr("the API server does not serve clusternetworkpolicies"));
  // It keeps being listed (quietly: no reconnection backoff) while the others work.
  const size_t backoffs = f.Backoffs().size();
  ASSERT_TRUE(f.Until([&] {
    int lists = 0;
    for (const FakeApi::Request& q : f.api->requests()) {
      lists += q.resource == Resource::kClusterNetworkPolicies && !q.watch;
    }
    return lists >= 3;
  }));
  EXPECT_EQ(f.Backoffs().size(), backoffs);
  f.api->SetPod("shop", "p9", {{"app", "web"}}, "10.0.0.99");
  ASSERT_TRUE(f.Until([&] { return f.HasPod("shop/p9"); }));

  // The CRD installed and a ClusterNetworkPolicy created: listed, then watched.
  f.api->Serve(Resource::kClusterNetworkPolicies, true);
  f.api->SetClusterPolicy("guard", 5, "a");
  ASSERT_TRUE(f.Until([&] { return HasClusterPolicy(f, "guard", 5); }));
  ASSERT_TRUE(f.Until([&] { return f.ds->status().resources[cnp].watching; }));
  EXPECT_FALSE(f.ds->status().resources[cnp].absent);
  f.api->SetClusterPolicy("guard", 6, "a");
  ASSERT_TRUE(f.Until([&] { return HasClusterPolicy(f, "guard", 6); }));
  EXPECT_TRUE(f.ds->Health().resources[cnp].error.ok());

  // The CRD deleted (its objects with it): the watch ends, the list says 404, none are left.
  f.api->Serve(Resource::kClusterNetworkPolicies, false);
  f.api->Cut(Resource::kClusterNetworkPolicies);
  ASSERT_TRUE(f.Until([&] { return f.ds->Current().state->cluster_policies.empty(); }));
  EXPECT_TRUE(f.ds->status().resources[cnp].absent);
  EXPECT_TRUE(f.ds->Health().healthy);
}

TEST(ReflectorTest, RestoredStateIsReconciledByDeltasAgainstIt) {
  Fixture f;
  Seed(*f.api, 3);  // shop/p0..p2
  // The saved State: p0 as the API has it, p1 with old labels, gone/x deleted since.
  State saved;
  {
    FakeApi other;
    Seed(other, 3);
    other.SetPod("shop", "p1", {{"app", "old"}}, "10.0.0.2");
    other.SetPod("gone", "x", {}, "10.0.9.9");
    other.SetNamespace("gone", {});
    for (Resource r : kResources) {
      absl::StatusOr<HttpResponse> resp = other.Get(ResourcePath(r), absl::Seconds(1));
      ASSERT_TRUE(resp.ok());
      absl::StatusOr<ListPage> page = DecodeListPage(r, resp->body);
      ASSERT_TRUE(page.ok()) << page.status();
      for (Item& item : page->items) Upsert(*item.object, &saved);
    }
  }
  f.ds->Restore(saved);
  f.ds->Start();
  ASSERT_TRUE(f.ds->WaitSynced(absl::Seconds(20)));
  std::optional<ChangedKeys> c = f.ds->ChangesBetween(1, f.ds->Current().generation);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->pods, (std::set<std::string>{"gone/x", "shop/p1"}));
  EXPECT_EQ(c->namespaces, (std::set<std::string>{"gone"}));
  EXPECT_TRUE(c->policies.empty());
  EXPECT_EQ(f.PodLabel("shop/p1", "app"), "web");
  EXPECT_FALSE(f.HasPod("gone/x"));
}

// Each wait is within [50%, 100%] of min(retry_min * 2^k, retry_max).
void ExpectBackoffs(const std::vector<absl::Duration>& got, const std::vector<int>& nominal_ms) {
  ASSERT_EQ(got.size(), nominal_ms.size());
  std::set<int64_t> ratios;
  for (size_t k = 0; k < got.size(); ++k) {
    const absl::Duration nominal = absl::Milliseconds(nominal_ms[k]);
    EXPECT_GE(got[k], nominal / 2) << k;
    EXPECT_LE(got[k], nominal) << k;
    ratios.insert(static_cast<int64_t>(1000 * absl::FDivDuration(got[k], nominal)));
  }
  // Jittered: not one fixed fraction of the nominal wait.
  if (got.size() >= 3) {
    EXPECT_GE(ratios.size(), 2u);
  }
}

TEST(ReflectorTest, ReconnectBackoffDoublesToItsCapWithJitterAndResets) {
  Fixture f(500, absl::Milliseconds(1), absl::Milliseconds(8));
  Seed(*f.api, 2);
  f.api->FailNext(Resource::kNamespaces, 7);  // the first list: refused 7 times
  f.ds->Start();
  ASSERT_TRUE(f.ds->WaitSynced(absl::Seconds(20)));
  ExpectBackoffs(f.Backoffs(), {1, 2, 4, 8, 8, 8, 8});
  ASSERT_TRUE(f.Until([&] { return f.api->WatchVersions(Resource::kPods).size() == 1; }));
  // The pods' watch: cut, then 3 refused reconnections: its own backoff from retry_min.
  f.api->FailNext(Resource::kPods, 3);
  f.api->Cut(Resource::kPods);
  ASSERT_TRUE(f.Until([&] { return f.api->WatchVersions(Resource::kPods).size() == 5; }));
  ASSERT_TRUE(f.Until([&] { return f.ds->status().resources[1].watching; }));
  // Once a watch answered 200 the next failure starts from retry_min again.
  f.api->FailNext(Resource::kPods, 1);
  f.api->Cut(Resource::kPods);
  ASSERT_TRUE(f.Until([&] { return f.api->WatchVersions(Resource::kPods).size() == 7; }));
  std::vector<absl::Duration> all = f.Backoffs();
  ASSERT_EQ(all.size(), 7u + 4u + 2u);
  // cut (1), three refusals (2, 4, 8); cut (1), one refusal (2).
  ExpectBackoffs(std::vector<absl::Duration>(all.begin() + 7, all.end()), {1, 2, 4, 8, 1, 2});
}

TEST(ReflectorTest, BackoffIsCappedForLongOutages) {
  Fixture f(500, absl::Milliseconds(1), absl::Milliseconds(4));
  Seed(*f.api, 1);
  f.api->FailNext(Resource::kNamespaces, 20);
  f.ds->Start();
  ASSERT_TRUE(f.ds->WaitSynced(absl::Seconds(20)));
  std::vector<int> nominal = {1, 2};
  while (nominal.size() < 20) nominal.push_back(4);
  ExpectBackoffs(f.Backoffs(), nominal);
}

TEST(ReflectorTest, CutMidStreamLosesNoEventAndAppliesNoneTwice) {
  Fixture f;
  Seed(*f.api, 3);
  f.ds->Start();
  ASSERT_TRUE(f.ds->WaitSynced(absl::Seconds(20)));
  ASSERT_TRUE(f.Until([&] { return f.api->WatchVersions(Resource::kPods).size() == 1; }));
  const uint64_t gen = f.ds->Current().generation;
  // 30 changes, each labelling one of three pods with a new value, sent in bursts while the
  // stream is cut after 2, 5 and 7 events (between two lines of one chunk when the burst is
  // already queued). A watch that resumed from an older version would re-apply events and
  // roll pods back (more generations, a wrong final label); one that resumed from a newer
  // version would lose some.
  Fixture* fp = &f;
  auto burst = [&](int from, int to) {
    f.api->Hold(Resource::kPods);
    for (int i = from; i < to; ++i) {
      fp->api->SetPod("shop", absl::StrCat("p", i % 3), {{"app", "web"}, {"v", absl::StrCat(i)}},
                      absl::StrCat("10.0.0.", i % 3 + 1));
    }
  };
  int cuts = 0;
  for (auto [from, to, cut_after] : std::vector<std::tuple<int, int, int>>{
           {0, 10, 2}, {10, 20, 5}, {20, 30, 7}}) {
    burst(from, to);
    f.api->Cut(Resource::kPods, cut_after);
    f.api->Release(Resource::kPods);
    ++cuts;
    ASSERT_TRUE(f.Until([&] {
      return static_cast<int>(f.api->LastDeliveredBeforeCuts(Resource::kPods).size()) == cuts;
    }));
  }
  ASSERT_TRUE(f.Until([&] { return f.PodLabel("shop/p2", "v") == "29"; }));
  ASSERT_TRUE(f.Until([&] { return f.WatchVersion(Resource::kPods) == absl::StrCat(f.api->rv()); }));
  EXPECT_EQ(f.PodLabel("shop/p0", "v"), "27");
  EXPECT_EQ(f.PodLabel("shop/p1", "v"), "28");
  // Each resumed watch starts exactly at the last event received before its cut.
  std::vector<std::string> resumed = f.api->WatchVersions(Resource::kPods);
  std::vector<int64_t> cut_at = f.api->LastDeliveredBeforeCuts(Resource::kPods);
  ASSERT_EQ(resumed.size(), 4u);
  for (int k = 0; k < 3; ++k) EXPECT_EQ(resumed[k + 1], absl::StrCat(cut_at[k])) << k;
  // Every event received once: a resumption from an older version would have been sent the
  // events after it again (more than 30), one from a newer version fewer.
  EXPECT_EQ(f.ds->status().events, 30);
  EXPECT_GT(f.ds->Current().generation, gen);
  EXPECT_EQ(f.ds->status().watch_losses, 3);
  EXPECT_EQ(f.ds->status().relists, 0);
}

}  // namespace
}  // namespace netpol::agent::k8s
