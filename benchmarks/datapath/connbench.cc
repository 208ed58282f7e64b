// connbench: the datapath benchmark's TCP endpoints, small enough not to be the bottleneck.
//
//   connbench serve --port 8080
//       Listens on 0.0.0.0 and [::] (v6only), accepts and closes every connection at once.
//       Prints "READY" when listening; runs until killed or stdin reaches EOF.
//   connbench connect --addr 10.244.1.18 --port 8080 --count 1000 [--warmup 50]
//                     [--timeout_ms 1000] [--max_seconds 30] [--raw FILE]
//       Opens `count` connections one after another. Each one's latency is the time a blocking
//       connect() takes: SYN out to SYN-ACK in, as the client sees it (the first packet's cost
//       in the node's forward and postrouting hooks included). Each connection is then reset
//       (SO_LINGER 0) so no TIME_WAIT state piles up. Prints one JSON object: count, ok,
//       failed, min/p50/p90/p99/max and mean in microseconds, elapsed_s and conns_per_s
//       (completed connections per second of the whole loop). --raw writes every latency
//       (µs), one per line.
//
// Exit status 0 when every connection succeeded, 1 otherwise (the JSON is printed either way).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

double Now() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

struct Args {
  std::string mode, addr = "127.0.0.1", raw;
  int port = 8080, count = 1000, warmup = 50, timeout_ms = 1000;
  double max_seconds = 30;
};

bool ParseArgs(int argc, char** argv, Args* a) {
  if (argc < 2) return false;
  a->mode = argv[1];
  for (int i = 2; i < argc; ++i) {
    std::string k = argv[i];
    if (i + 1 >= argc) {
      fprintf(stderr, "connbench: %s needs a value\n", k.c_str());
      return false;
    }
    std::string v = argv[++i];
    char* end = nullptr;
    auto num = [&](double lo, double hi) {
      double d = strtod(v.c_str(), &end);
      if (end == v.c_str() || *end != '\0' || d < lo || d > hi) {
        fprintf(stderr, "connbench: %s: bad value %s\n", k.c_str(), v.c_str());
        exit(2);
      }
      return d;
    };
    if (k == "--addr") a->addr = v;
    else if (k == "--raw") a->raw = v;
    else if (k == "--port") a->port = static_cast<int>(num(1, 65535));
    else if (k == "--count") a->count = static_cast<int>(num(1, 1e8));
    else if (k == "--warmup") a->warmup = static_cast<int>(num(0, 1e6));
    else if (k == "--timeout_ms") a->timeout_ms = static_cast<int>(num(1, 600000));
    else if (k == "--max_seconds") a->max_seconds = num(0.001, 1e6);
    else {
      fprintf(stderr, "connbench: unknown flag %s\n", k.c_str());
      return false;
    }
  }
  return a->mode == "serve" || a->mode == "connect";
}

int Listen(int family, int port) {
  int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  int rc;
  if (family == AF_INET6) {
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    sockaddr_in6 sa{};
    sa.sin6_family = AF_INET6;
    sa.sin6_port = htons(port);
    sa.sin6_addr = in6addr_any;
    rc = bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  } else {
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_ANY);
    rc = bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  }
  if (rc != 0 || listen(fd, 4096) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

int Serve(const Args& a) {
  pollfd fds[3];
  int n = 0;
  for (int family : {AF_INET, AF_INET6}) {
    int fd = Listen(family, a.port);
    if (fd < 0) {
      fprintf(stderr, "connbench: listen %s port %d: %s\n", family == AF_INET ? "v4" : "v6",
              a.port, strerror(errno));
      return 1;
    }
    fds[n++] = {fd, POLLIN, 0};
  }
  fds[n++] = {0, POLLIN, 0};  // stdin: EOF ends the server
  printf("READY\n");
  fflush(stdout);
  while (true) {
    if (poll(fds, n, -1) < 0) {
      if (errno == EINTR) continue;
      return 1;
    }
    if (fds[n - 1].revents & (POLLIN | POLLHUP)) {
      char buf[64];
      if (read(0, buf, sizeof buf) <= 0) return 0;
    }
    for (int i = 0; i < n - 1; ++i) {
      if (!(fds[i].revents & POLLIN)) continue;
      while (true) {
        int c = accept4(fds[i].fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c < 0) break;
        close(c);
      }
    }
  }
}

// One connection; returns its connect() time in seconds, or a negative value on failure.
double ConnectOnce(const sockaddr* sa, socklen_t len, int family, int timeout_ms) {
  int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);  // bounds a blocking connect()
  double t0 = Now();
  int rc = connect(fd, sa, len);
  double dt = Now() - t0;
  linger l{1, 0};  // reset on close: no TIME_WAIT on the client
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  close(fd);
  return rc == 0 ? dt : -1;
}

double Quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t rank = static_cast<size_t>(std::ceil(q * v.size()));
  rank = std::min(std::max<size_t>(rank, 1), v.size());
  return v[rank - 1];
}

int Connect(const Args& a) {
  sockaddr_storage ss{};
  socklen_t len;
  int family;
  auto* s4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* s6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, a.addr.c_str(), &s4->sin_addr) == 1) {
    family = AF_INET;
    s4->sin_family = AF_INET;
    s4->sin_port = htons(a.port);
    len = sizeof *s4;
  } else if (inet_pton(AF_INET6, a.addr.c_str(), &s6->sin6_addr) == 1) {
    family = AF_INET6;
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(a.port);
    len = sizeof *s6;
  } else {
    fprintf(stderr, "connbench: --addr %s: not an IP address\n", a.addr.c_str());
    return 2;
  }
  const sockaddr* sa = reinterpret_cast<sockaddr*>(&ss);
  for (int i = 0; i < a.warmup; ++i) ConnectOnce(sa, len, family, a.timeout_ms);
  std::vector<double> us;
  us.reserve(a.count);
  int failed = 0;
  const double start = Now();
  for (int i = 0; i < a.count; ++i) {
    double dt = ConnectOnce(sa, len, family, a.timeout_ms);
    if (dt < 0) ++failed;
    else us.push_back(dt * 1e6);
    if (Now() - start > a.max_seconds) break;
  }
  const double elapsed = Now() - start;
  double sum = 0;
  for (double v : us) sum += v;
  if (!a.raw.empty()) {
    FILE* f = fopen(a.raw.c_str(), "w");
    if (f == nullptr) {
      fprintf(stderr, "connbench: %s: %s\n", a.raw.c_str(), strerror(errno));
      return 2;
    }
    for (double v : us) fprintf(f, "%.2f\n", v);
    fclose(f);
  }
  printf("{\"count\": %zu, \"ok\": %zu, \"failed\": %d, \"min_us\": %.2f, \"p50_us\": %.2f, "
         "\"p90_us\": %.2f, \"p99_us\": %.2f, \"max_us\": %.2f, \"mean_us\": %.2f, "
         "\"elapsed_s\": %.4f, \"conns_per_s\": %.1f}\n",
         us.size() + failed, us.size(), failed, Quantile(us, 0), Quantile(us, 0.5),
         Quantile(us, 0.9), Quantile(us, 0.99), Quantile(us, 1), us.empty() ? 0 : sum / us.size(),
         elapsed, elapsed > 0 ? us.size() / elapsed : 0);
  return failed == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  if (!ParseArgs(argc, argv, &a)) {
    fprintf(stderr,
            "usage: connbench serve --port P\n"
            "       connbench connect --addr A --port P [--count N] [--warmup W] "
            "[--timeout_ms T] [--max_seconds S] [--raw FILE]\n");
    return 2;
  }
  return a.mode == "serve" ? Serve(a) : Connect(a);
}
