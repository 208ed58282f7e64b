// Kubernetes JSON -> model objects. See decode.h.
#include "agent/k8s/decode.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/compiler/compiler.h"
#include "simdjson.h"

namespace netpol::agent::k8s {

namespace od = simdjson::ondemand;

const char* ResourceName(Resource r) {
  switch (r) {
    case Resource::kNamespaces:
      return "namespaces";
    case Resource::kPods:
      return "pods";
    case Resource::kNetworkPolicies:
      return "networkpolicies";
    case Resource::kClusterNetworkPolicies:
      return "clusternetworkpolicies";
    case Resource::kNodes:
      return "nodes";
  }
  return "";
}

const char* ResourcePath(Resource r) {
  switch (r) {
    case Resource::kNamespaces:
      return "/api/v1/namespaces";
    case Resource::kPods:
      return "/api/v1/pods";
    case Resource::kNetworkPolicies:
      return "/apis/networking.k8s.io/v1/networkpolicies";
    case Resource::kClusterNetworkPolicies:
      return "/apis/policy.networking.k8s.io/v1alpha2/clusternetworkpolicies";
    case Resource::kNodes:
      return "/api/v1/nodes";
  }
  return "";
}

bool ResourceMayBeAbsent(Resource r) { return r == Resource::kClusterNetworkPolicies; }

namespace {

std::string Str(od::value v) { return std::string(std::string_view(v.get_string())); }

struct Meta {
  std::string name;
  std::string namespace_name;
  std::string resource_version;
  Labels labels;
  std::optional<std::string> log_allowed;  // annotations[kLogAllowedAnnotation], when asked for
};

void DecodeLabels(od::object labels, Labels* out) {
  for (auto field : labels) {
    std::string key(std::string_view(field.unescaped_key()));
    (*out)[std::move(key)] = Str(field.value());
  }
}

void DecodeMeta(od::object meta, Meta* out, bool labels, bool log_allowed = false) {
  for (auto field : meta) {
    std::string_view key = field.unescaped_key();
    if (key == "name") {
      out->name = Str(field.value());
    } else if (key == "namespace") {
      out->namespace_name = Str(field.value());
    } else if (key == "resourceVersion") {
      out->resource_version = Str(field.value());
    } else if (key == "labels" && labels) {
      DecodeLabels(field.value().get_object(), &out->labels);
    } else if (key == "annotations" && log_allowed) {
      for (auto a : field.value().get_object()) {
        if (std::string_view(a.unescaped_key()) == kLogAllowedAnnotation) {
          out->log_allowed = Str(a.value());
        }
      }
    }
  }
}

std::string JsonQuote(absl::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      absl::StrAppend(&out, "\\u00", absl::Hex(static_cast<unsigned char>(c), absl::kZeroPad2));
    } else {
      out += c;
    }
  }
  out += '"';
  return out;
}

std::optional<Protocol> ParseProtocol(std::string_view p) {
  if (p == "TCP") return Protocol::kTCP;
  if (p == "UDP") return Protocol::kUDP;
  if (p == "SCTP") return Protocol::kSCTP;
  return std::nullopt;
}

void DecodeNamespace(od::object obj, Item* item) {
  Meta meta;
  for (auto field : obj) {
    if (std::string_view(field.unescaped_key()) == "metadata") {
      DecodeMeta(field.value().get_object(), &meta, true);
    }
  }
  item->key = meta.name;
  item->resource_version = meta.resource_version;
  Namespace ns;
  ns.name = meta.name;
  ns.labels = std::move(meta.labels);
  ns.labels[kNamespaceNameLabel] = ns.name;
  item->object = Object{std::move(ns)};
}

void DecodePod(od::object obj, Item* item) {
  Meta meta;
  Pod pod;
  std::string phase;
  std::string problem;
  auto add_ip = [&](std::string_view text, const char* path) {
    absl::StatusOr<IpAddr> ip = IpAddr::Parse(absl::string_view(text.data(), text.size()));
    if (!ip.ok()) {
      if (problem.empty()) problem = absl::StrCat(path, ": ", ip.status().message());
      return;
    }
    if (std::find(pod.ips.begin(), pod.ips.end(), *ip) != pod.ips.end()) return;
    for (const IpAddr& other : pod.ips) {
      if (other.family == ip->family) {
        if (problem.empty()) {
          problem = absl::StrCat(path, ": a pod may have at most one address per family; ",
                                 other.ToString(), " and ", ip->ToString(), " conflict");
        }
        return;
      }
    }
    pod.ips.push_back(*ip);
  };
  for (auto field : obj) {
    std::string_view key = field.unescaped_key();
    if (key == "metadata") {
      DecodeMeta(field.value().get_object(), &meta, true);
    } else if (key == "spec") {
      for (auto s : field.value().get_object()) {
        std::string_view sk = s.unescaped_key();
        if (sk == "nodeName") {
          pod.node_name = Str(s.value());
        } else if (sk == "hostNetwork") {
          pod.host_network = s.value().get_bool();
        } else if (sk == "containers") {
          for (auto c : s.value().get_array()) {
            for (auto cf : c.get_object()) {
              if (std::string_view(cf.unescaped_key()) != "ports") continue;
              for (auto p : cf.value().get_array()) {
                ContainerPort cp;
                for (auto pf : p.get_object()) {
                  std::string_view pk = pf.unescaped_key();
                  if (pk == "name") {
                    cp.name = Str(pf.value());
                  } else if (pk == "containerPort") {
                    cp.container_port = static_cast<int32_t>(int64_t(pf.value().get_int64()));
                  } else if (pk == "protocol") {
                    std::string_view proto = pf.value().get_string();
                    std::optional<Protocol> parsed = ParseProtocol(proto);
                    if (parsed) {
                      cp.protocol = *parsed;
                    } else if (problem.empty()) {
                      problem = absl::StrCat("spec.containers[].ports[].protocol: unsupported \"",
                                             absl::string_view(proto.data(), proto.size()), "\"");
                    }
                  }
                }
                pod.ports.push_back(std::move(cp));
              }
            }
          }
        }
      }
    } else if (key == "status") {
      for (auto s : field.value().get_object()) {
        std::string_view sk = s.unescaped_key();
        if (sk == "phase") {
          phase = Str(s.value());
        } else if (sk == "podIP") {
          add_ip(s.value().get_string(), "status.podIP");
        } else if (sk == "podIPs") {
          for (auto e : s.value().get_array()) {
            for (auto ef : e.get_object()) {
              if (std::string_view(ef.unescaped_key()) == "ip") {
                add_ip(ef.value().get_string(), "status.podIPs[].ip");
              }
            }
          }
        }
      }
    }
  }
  item->key = absl::StrCat(meta.namespace_name, "/", meta.name);
  item->resource_version = meta.resource_version;
  // Finished pods hold no address and are not enforced (their IPs may be reused).
  if (phase == "Succeeded" || phase == "Failed") return;
  pod.name = std::move(meta.name);
  pod.namespace_name = std::move(meta.namespace_name);
  pod.labels = std::move(meta.labels);
  if (problem.empty()) {
    absl::Status valid = compiler::ValidateObject(pod);
    if (!valid.ok()) problem = std::string(valid.message());
  }
  if (!problem.empty()) {
    item->invalid = absl::StrCat("pod ", item->key, ": ", problem);
    return;
  }
  item->object = Object{std::move(pod)};
}

// The spec goes through the model's loader as a manifest would, so that a policy means
// exactly the same from the API as from a file.
void DecodePolicy(od::object obj, Item* item) {
  Meta meta;
  std::string spec;
  for (auto field : obj) {
    std::string_view key = field.unescaped_key();
    if (key == "metadata") {
      DecodeMeta(field.value().get_object(), &meta, false, /*log_allowed=*/true);
    } else if (key == "spec") {
      od::object spec_object = field.value().get_object();
      spec = std::string(std::string_view(spec_object.raw_json()));
    }
  }
  item->key = absl::StrCat(meta.namespace_name, "/", meta.name);
  item->resource_version = meta.resource_version;
  std::string doc = absl::StrCat(
      "{\"apiVersion\":\"networking.k8s.io/v1\",\"kind\":\"NetworkPolicy\",\"metadata\":{"
      "\"name\":",
      JsonQuote(meta.name), ",\"namespace\":", JsonQuote(meta.namespace_name),
      meta.log_allowed ? absl::StrCat(",\"annotations\":{", JsonQuote(kLogAllowedAnnotation), ":",
                                      JsonQuote(*meta.log_allowed), "}")
                       : std::string(),
      "}",
      spec.empty() ? "" : ",\"spec\":", spec, "}");
  LoadOptions options;
  options.strict = false;  // fields newer than netpol are reported, not fatal
  options.default_namespace = meta.namespace_name;
  absl::StatusOr<LoadResult> loaded = LoadYaml(doc, options);
  if (!loaded.ok()) {
    item->invalid = std::string(loaded.status().message());
    return;
  }
  if (loaded->objects.size() != 1 || loaded->objects[0].AsNetworkPolicy() == nullptr) {
    item->invalid = absl::StrCat("networkpolicy ", item->key, ": not a NetworkPolicy");
    return;
  }
  absl::Status valid = compiler::ValidateObject(*loaded->objects[0].AsNetworkPolicy());
  if (!valid.ok()) {
    item->invalid = std::string(valid.message());
    return;
  }
  item->warnings = std::move(loaded->warnings);
  item->object = std::move(loaded->objects[0]);
}

// Like DecodePolicy: the name and the whole spec through the loader, then the compiler's
// validation, so a ClusterNetworkPolicy means what the same manifest would.
void DecodeClusterPolicy(od::object obj, Item* item) {
  Meta meta;
  std::string spec;
  for (auto field : obj) {
    std::string_view key = field.unescaped_key();
    if (key == "metadata") {
      DecodeMeta(field.value().get_object(), &meta, false);
    } else if (key == "spec") {
      od::object spec_object = field.value().get_object();
      spec = std::string(std::string_view(spec_object.raw_json()));
    }
  }
  item->key = meta.name;
  item->resource_version = meta.resource_version;
  std::string doc = absl::StrCat(
      "{\"apiVersion\":\"policy.networking.k8s.io/v1alpha2\",\"kind\":\"ClusterNetworkPolicy\","
      "\"metadata\":{\"name\":",
      JsonQuote(meta.name), "}", spec.empty() ? "" : ",\"spec\":", spec, "}");
  LoadOptions options;
  options.strict = false;  // fields newer than netpol are reported, not fatal
  absl::StatusOr<LoadResult> loaded = LoadYaml(doc, options);
  if (!loaded.ok()) {
    item->invalid = std::string(loaded.status().message());
    return;
  }
  if (loaded->objects.size() != 1 || loaded->objects[0].AsClusterNetworkPolicy() == nullptr) {
    item->invalid = absl::StrCat("clusternetworkpolicy ", item->key, ": not a ClusterNetworkPolicy");
    return;
  }
  absl::Status valid = compiler::ValidateObject(*loaded->objects[0].AsClusterNetworkPolicy());
  if (!valid.ok()) {
    item->invalid = std::string(valid.message());
    return;
  }
  item->warnings = std::move(loaded->warnings);
  item->object = std::move(loaded->objects[0]);
}

// A Node through the loader, given only what netpol reads: its name, its labels and
// status.addresses (a Node's status also lists its images and conditions, never copied).
void DecodeNode(od::object obj, Item* item) {
  Meta meta;
  std::string labels;
  std::string addresses;
  for (auto field : obj) {
    std::string_view key = field.unescaped_key();
    if (key == "metadata") {
      for (auto m : field.value().get_object()) {
        std::string_view mk = m.unescaped_key();
        if (mk == "name") {
          meta.name = Str(m.value());
        } else if (mk == "resourceVersion") {
          meta.resource_version = Str(m.value());
        } else if (mk == "labels") {
          od::object l = m.value().get_object();
          labels = std::string(std::string_view(l.raw_json()));
        }
      }
    } else if (key == "status") {
      for (auto st : field.value().get_object()) {
        if (std::string_view(st.unescaped_key()) != "addresses") continue;
        od::array a = st.value().get_array();
        addresses = std::string(std::string_view(a.raw_json()));
      }
    }
  }
  item->key = meta.name;
  item->resource_version = meta.resource_version;
  std::string doc = absl::StrCat(
      "{\"apiVersion\":\"v1\",\"kind\":\"Node\",\"metadata\":{\"name\":", JsonQuote(meta.name),
      labels.empty() ? "" : ",\"labels\":", labels, "}",
      addresses.empty() ? "" : ",\"status\":{\"addresses\":", addresses,
      addresses.empty() ? "" : "}", "}");
  LoadOptions options;
  options.strict = false;
  absl::StatusOr<LoadResult> loaded = LoadYaml(doc, options);
  if (!loaded.ok()) {
    item->invalid = std::string(loaded.status().message());
    return;
  }
  if (loaded->objects.size() != 1 || loaded->objects[0].AsNode() == nullptr) {
    item->invalid = absl::StrCat("node ", item->key, ": not a Node");
    return;
  }
  item->warnings = std::move(loaded->warnings);
  item->object = std::move(loaded->objects[0]);
}

void DecodeItem(Resource r, od::object obj, Item* item) {
  switch (r) {
    case Resource::kNamespaces:
      DecodeNamespace(obj, item);
      return;
    case Resource::kPods:
      DecodePod(obj, item);
      return;
    case Resource::kNetworkPolicies:
      DecodePolicy(obj, item);
      return;
    case Resource::kClusterNetworkPolicies:
      DecodeClusterPolicy(obj, item);
      return;
    case Resource::kNodes:
      DecodeNode(obj, item);
      return;
  }
}

absl::Status Malformed(Resource r, const char* what, const std::exception& e) {
  return absl::InvalidArgumentError(
      absl::StrCat("malformed ", ResourceName(r), " ", what, ": ", e.what()));
}

}  // namespace

absl::StatusOr<ListPage> DecodeListPage(Resource r, absl::string_view json) {
  // One parser per thread, reused: its buffers grow to the largest page once.
  thread_local od::parser parser;
  ListPage page;
  try {
    simdjson::padded_string padded(json.data(), json.size());
    od::document doc = parser.iterate(padded);
    bool saw_items = false;
    for (auto field : doc.get_object()) {
      std::string_view key = field.unescaped_key();
      if (key == "metadata") {
        for (auto m : field.value().get_object()) {
          std::string_view mk = m.unescaped_key();
          if (mk == "resourceVersion") {
            page.resource_version = Str(m.value());
          } else if (mk == "continue") {
            page.continue_token = Str(m.value());
          }
        }
      } else if (key == "items") {
        saw_items = true;
        od::value items = field.value();
        if (items.is_null()) continue;
        for (auto element : items.get_array()) {
          Item item;
          DecodeItem(r, element.get_object(), &item);
          page.items.push_back(std::move(item));
        }
      }
    }
    if (!saw_items || page.resource_version.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the ", ResourceName(r), " list response has no ", saw_items ? "resourceVersion" : "items"));
    }
  } catch (const simdjson::simdjson_error& e) {
    return Malformed(r, "list", e);
  }
  return page;
}

absl::StatusOr<WatchEvent> DecodeWatchEvent(Resource r, absl::string_view line) {
  thread_local od::parser parser;
  WatchEvent event;
  try {
    simdjson::padded_string padded(line.data(), line.size());
    od::document doc = parser.iterate(padded);
    std::string type;
    std::string object;  // raw, decoded once the type is known (it may come first)
    for (auto field : doc.get_object()) {
      std::string_view key = field.unescaped_key();
      if (key == "type") {
        type = Str(field.value());
      } else if (key == "object") {
        od::object raw = field.value().get_object();
        object = std::string(std::string_view(raw.raw_json()));
      }
    }
    if (type == "ADDED") {
      event.type = WatchEvent::Type::kAdded;
    } else if (type == "MODIFIED") {
      event.type = WatchEvent::Type::kModified;
    } else if (type == "DELETED") {
      event.type = WatchEvent::Type::kDeleted;
    } else if (type == "BOOKMARK") {
      event.type = WatchEvent::Type::kBookmark;
    } else if (type == "ERROR") {
      event.type = WatchEvent::Type::kError;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("watch event of unknown type \"", type, "\""));
    }
    if (object.empty()) return absl::InvalidArgumentError("watch event without an object");
    od::parser object_parser;
    simdjson::padded_string padded_object(object);
    od::document o = object_parser.iterate(padded_object);
    if (event.type == WatchEvent::Type::kError) {
      for (auto field : o.get_object()) {
        std::string_view key = field.unescaped_key();
        if (key == "code") {
          event.error_code = static_cast<int>(int64_t(field.value().get_int64()));
        } else if (key == "message") {
          event.error_message = Str(field.value());
        }
      }
    } else if (event.type == WatchEvent::Type::kBookmark) {
      for (auto field : o.get_object()) {
        if (std::string_view(field.unescaped_key()) != "metadata") continue;
        Meta meta;
        DecodeMeta(field.value().get_object(), &meta, false);
        event.item.resource_version = meta.resource_version;
      }
    } else {
      DecodeItem(r, o.get_object(), &event.item);
      if (event.type == WatchEvent::Type::kDeleted) {
        event.item.object.reset();
        event.item.deleted = true;
        event.item.invalid.clear();
        event.item.warnings.clear();
      }
    }
  } catch (const simdjson::simdjson_error& e) {
    return Malformed(r, "watch event", e);
  }
  return event;
}

}  // namespace netpol::agent::k8s
