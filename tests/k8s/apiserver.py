#!/usr/bin/python3
"""A real Kubernetes API server for tests: Debian's etcd and an upstream kube-apiserver v1.28.7.

The API server binary comes from `../shared/k8s/kube-apiserver.gz` next to the project's root,
or from where $NETPOL_KUBE_APISERVER points (tools/test sets it). It is checked against its
pinned sha256 and unpacked once into a cache directory ($NETPOL_CACHE_DIR, default
/var/tmp/netpol-cache-<uid>). When it is absent a test skips with a visible message, and fails
when $NETPOL_CI=1 (see `skip_or_fail`).

    import apiserver
    with apiserver.APIServer() as api:                # about 4 s; RSS about 250 MB
        api.kubectl("get", "namespaces")              # kubectl on PATH, as the admin
        api.create_namespace("x", {"ns": "x"})
        api.create_pod("x", "a", {"pod": "a"}, node="node-1",
                       ips=["10.244.1.17", "fd00:10:244:1::11"])   # spec + pods/status
        api.kubeconfig("/tmp/kc", user="alice", groups=["dev"])  # a client-certificate user
        token = api.create_token("netpol-agent", "kube-system")  # a ServiceAccount's token

Everything runs in a temporary directory on free ports of one address: 127.0.0.1 on the host
by default, or an address inside a network namespace (`netns=`, `address=`) so agents in lab
nodes reach it. Certificates come from openssl: a CA signs the serving certificate and every
client certificate (the API server trusts it with --client-ca-file, so users can be minted at
any time). Authentication: client certificates, a static token file (the admin's token,
group system:masters) and ServiceAccount tokens (TokenRequest, signed by a key of the
fixture). Authorization: RBAC only.

One API server per test program: start it once and share it between the program's cases.
"""

import base64
import gzip
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))

# The pinned binary (../shared/k8s/README.md).
APISERVER_GZ_SHA256 = "dd66e4d1926da99f61d19a6612f5b717ac822b703ce9e799b84a089fd2c749b4"
APISERVER_SHA256 = "6773cdffecec37bb08756ef3a704fc9ae5a552f549c9ca6eac689b0a848a6140"
APISERVER_VERSION = "v1.28.7"
APISERVER_ENV = "NETPOL_KUBE_APISERVER"
CACHE_ENV = "NETPOL_CACHE_DIR"
ETCD = "/usr/bin/etcd"
ETCDCTL = "/usr/bin/etcdctl"
OPENSSL = "/usr/bin/openssl"
ADMIN_TOKEN = "netpol-test-admin-token"
SERVICE_CIDR = "10.96.0.0/16"


class APIServerError(Exception):
    """The API server or etcd could not be started or answered with an error."""


class Unavailable(Exception):
    """A prerequisite (the binary, etcd, openssl, kubectl) is missing on this machine."""


# --------------------------------------------------------------------------------------------
# Skip or fail


def skip_or_fail(reason):
    """The project's rule for a test that cannot run here (tests/lab's lab.skip_or_fail): a
    visible skip by hand, a failure when $NETPOL_CI=1."""
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lab"))
    try:
        import lab
    finally:
        sys.path.pop(0)
    lab.skip_or_fail(reason)


# --------------------------------------------------------------------------------------------
# The binary


def project_root():
    """The source tree's root: this file's real location (Bazel's runfiles hold symlinks)."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))


def find_archive():
    """Path of kube-apiserver.gz ($NETPOL_KUBE_APISERVER, else ../shared/k8s/ from the project's
    root). Raises Unavailable naming where it looked."""
    env = os.environ.get(APISERVER_ENV)
    if env:
        if os.path.isfile(env):
            return env
        raise Unavailable("%s=%s: no such file" % (APISERVER_ENV, env))
    default = os.path.join(os.path.dirname(project_root()), "shared", "k8s", "kube-apiserver.gz")
    if os.path.isfile(default):
        return default
    raise Unavailable("no kube-apiserver: %s is absent and %s is not set (the test needs a real "
                      "kube-apiserver %s; see tests/k8s/README.md)" % (default, APISERVER_ENV,
                                                                      APISERVER_VERSION))


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_dir():
    d = os.environ.get(CACHE_ENV) or "/var/tmp/netpol-cache-%d" % os.getuid()
    os.makedirs(d, mode=0o700, exist_ok=True)
    return d


def apiserver_binary():
    """The unpacked, verified kube-apiserver: unpacked once per machine (per cache directory),
    atomically, so concurrent tests never see half a file."""
    target = os.path.join(cache_dir(), "kube-apiserver-" + APISERVER_SHA256[:16])
    if os.access(target, os.X_OK):
        return target
    archive = find_archive()
    got = _sha256(archive)
    if got != APISERVER_GZ_SHA256:
        raise APIServerError("%s: sha256 %s, expected %s (../shared/k8s/README.md)"
                             % (archive, got, APISERVER_GZ_SHA256))
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target), prefix=".kube-apiserver-")
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, gzip.open(archive, "rb") as src:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                h.update(chunk)
                out.write(chunk)
        if h.hexdigest() != APISERVER_SHA256:
            raise APIServerError("%s unpacks to sha256 %s, expected %s"
                                 % (archive, h.hexdigest(), APISERVER_SHA256))
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def check_prerequisites(kubectl=True):
    """Raises Unavailable naming the first missing piece; returns the API server's path."""
    for tool, pkg in ((ETCD, "etcd-server"), (ETCDCTL, "etcd-client"), (OPENSSL, "openssl")):
        if not os.access(tool, os.X_OK):
            raise Unavailable("%s is not installed (Debian package %s; tools/setup)" % (tool, pkg))
    if kubectl and shutil.which("kubectl") is None:
        raise Unavailable("kubectl is not on PATH")
    return apiserver_binary()


def require(kubectl=True):
    """For test programs: returns the API server's path, or skips (fails in CI) with the reason."""
    try:
        return check_prerequisites(kubectl)
    except Unavailable as e:
        skip_or_fail(str(e))


# --------------------------------------------------------------------------------------------
# Helpers


def _run(argv, input=None, check=True, timeout=60, env=None):
    try:
        cp = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout,
                            env=env)
    except subprocess.TimeoutExpired:
        raise APIServerError("%s: timed out after %ss" % (" ".join(argv), timeout))
    if check and cp.returncode != 0:
        raise APIServerError("%s: exit %d: %s" % (" ".join(argv), cp.returncode,
                                                  (cp.stderr or cp.stdout).strip()))
    return cp


def free_ports(n, address="127.0.0.1", netns=None):
    """n distinct TCP ports free on `address` now (bound, then released). Inside a fresh network
    namespace nothing else listens, so fixed ports do; on the host the kernel picks them."""
    if netns is not None:
        return [23990 + i for i in range(n)]
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET)
            s.bind((address, 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def _url_host(address):
    return "[%s]" % address if ":" in address else address


class Response:
    def __init__(self, status, body):
        self.status = status
        self.body = body

    def json(self):
        return json.loads(self.body) if self.body else None


# --------------------------------------------------------------------------------------------
# The API server


class APIServer:
    """etcd + kube-apiserver in a temporary directory. Context manager; start()/stop()."""

    def __init__(self, netns=None, address="127.0.0.1", watch_cache=True, extra_args=(),
                 workdir=None):
        self.netns = netns
        self.address = address
        self.watch_cache = watch_cache
        self.extra_args = list(extra_args)
        self.binary = None
        self.dir = workdir
        self._own_dir = workdir is None
        self.etcd_proc = None
        self.proc = None
        self.port = self.etcd_port = self.etcd_peer_port = None
        self._ssl = None
        self._serial = 1
        self._helper = None

    # ---- lifecycle

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    @property
    def url(self):
        return "https://%s:%d" % (_url_host(self.address), self.port)

    @property
    def etcd_url(self):
        return "http://%s:%d" % (_url_host(self.address), self.etcd_port)

    @property
    def ca_file(self):
        return os.path.join(self.dir, "ca.crt")

    @property
    def admin_kubeconfig(self):
        return os.path.join(self.dir, "admin.kubeconfig")

    def start(self, timeout=60):
        """Starts etcd and the API server; returns once /readyz says ok. Retries with other
        ports when one was taken meanwhile."""
        self.binary = check_prerequisites(kubectl=False)
        if self.dir is None:
            self.dir = tempfile.mkdtemp(prefix="netpol-apiserver-")
        try:
            self._make_certs()
            self.kubeconfig(self.admin_kubeconfig)
            last = None
            for _ in range(3):
                self.etcd_port, self.etcd_peer_port, self.port = free_ports(3, self.address,
                                                                            self.netns)
                try:
                    self._start_etcd(timeout)
                    self._start_apiserver(timeout)
                    return self
                except APIServerError as e:
                    last = e
                    self._kill_all()
                    if "address already in use" not in str(e) or self.netns is not None:
                        raise
            raise last
        except BaseException:
            self.stop()
            raise

    def stop(self):
        """Stops both processes and removes the temporary directory. Idempotent."""
        self._kill_all()
        if self._own_dir and self.dir and os.path.isdir(self.dir):
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = self.dir if not self._own_dir else None

    def _kill_all(self):
        self._stop_helper()
        self.stop_apiserver()
        self.stop_etcd()

    @staticmethod
    def _kill(proc):
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def _wrap(self, argv):
        return (["ip", "netns", "exec", self.netns] if self.netns else []) + list(argv)

    def _spawn(self, argv, log_name):
        log = open(os.path.join(self.dir, log_name), "a")
        try:
            return subprocess.Popen(self._wrap(argv), stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            log.close()

    def log_tail(self, which="apiserver", lines=30):
        try:
            with open(os.path.join(self.dir, which + ".log"), errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError as e:
            return "(%s)" % e

    # ---- certificates

    def _openssl(self, *args, input=None):
        return _run([OPENSSL] + list(args), input=input)

    def _make_certs(self):
        d = self.dir
        if os.path.exists(os.path.join(d, "ca.crt")):
            return  # a restart in the same directory keeps its certificates
        self._openssl("genrsa", "-out", os.path.join(d, "sa.key"), "2048")
        self._openssl("rsa", "-in", os.path.join(d, "sa.key"), "-pubout", "-out",
                      os.path.join(d, "sa.pub"))
        self._openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
                      "-keyout", os.path.join(d, "ca.key"), "-out", os.path.join(d, "ca.crt"),
                      "-subj", "/CN=netpol-test-ca")
        san = "subjectAltName=IP:%s,IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc" % (
            self.address)
        if self.address == "127.0.0.1":
            san = "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc"
        ext = os.path.join(d, "serving.ext")
        with open(ext, "w") as f:
            f.write(san + "\nextendedKeyUsage=serverAuth\n")
        self._openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout",
                      os.path.join(d, "serving.key"), "-out", os.path.join(d, "serving.csr"),
                      "-subj", "/CN=kube-apiserver")
        self._sign(os.path.join(d, "serving.csr"), os.path.join(d, "serving.crt"), ext)
        with open(os.path.join(d, "tokens.csv"), "w") as f:
            f.write('%s,admin,admin-uid,"system:masters"\n' % ADMIN_TOKEN)

    def _sign(self, csr, crt, extfile):
        self._serial += 1
        self._openssl("x509", "-req", "-in", csr, "-CA", self.ca_file, "-CAkey",
                      os.path.join(self.dir, "ca.key"), "-set_serial", str(self._serial),
                      "-days", "30", "-out", crt, "-extfile", extfile)

    def client_cert(self, user, groups=()):
        """Mints a client certificate (CN=user, O=each group) signed by the CA the API server
        trusts. Returns (cert path, key path)."""
        base = os.path.join(self.dir, "user-%s" % hashlib.sha256(
            ("%s|%s" % (user, ",".join(groups))).encode()).hexdigest()[:12])
        crt, key = base + ".crt", base + ".key"
        if os.path.exists(crt):
            return crt, key
        subj = "".join("/O=%s" % g for g in groups) + "/CN=%s" % user
        self._openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out",
                      base + ".csr", "-subj", subj)
        with open(base + ".ext", "w") as f:
            f.write("extendedKeyUsage=clientAuth\n")
        self._sign(base + ".csr", crt, base + ".ext")
        return crt, key

    def kubeconfig(self, path, user=None, groups=(), token=None):
        """Writes a kubeconfig for this API server: the admin (static token, system:masters) by
        default, a client-certificate user when `user` is given, or a bearer `token`. Returns
        path. The server address is the one the API server listens on (self.url)."""
        if token is not None:
            auth = {"token": token}
            name = "token"
        elif user is not None:
            crt, key = self.client_cert(user, tuple(groups))
            auth = {"client-certificate": crt, "client-key": key}
            name = user
        else:
            auth = {"token": ADMIN_TOKEN}
            name = "admin"
        # The port may not be chosen yet (the admin kubeconfig is written before start); it is
        # rewritten by _start_apiserver.
        server = "https://%s:%s" % (_url_host(self.address), self.port or 0)
        cfg = {
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "test", "cluster": {"server": server,
                                                      "certificate-authority": self.ca_file}}],
            "users": [{"name": name, "user": auth}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": name}}],
            "current-context": "test",
        }
        with open(path, "w") as f:
            json.dump(cfg, f, indent=1)  # JSON is YAML
        if not hasattr(self, "_kubeconfigs"):
            self._kubeconfigs = {}
        self._kubeconfigs[path] = (user, tuple(groups), token)
        return path

    # ---- etcd

    def _start_etcd(self, timeout):
        data = os.path.join(self.dir, "etcd")
        peer = "http://%s:%d" % (_url_host(self.address), self.etcd_peer_port)
        self.etcd_proc = self._spawn(
            [ETCD, "--name=t", "--data-dir=" + data, "--listen-client-urls=" + self.etcd_url,
             "--advertise-client-urls=" + self.etcd_url, "--listen-peer-urls=" + peer,
             "--initial-advertise-peer-urls=" + peer, "--initial-cluster=t=" + peer,
             "--log-level=warn"], "etcd.log")
        deadline = time.monotonic() + timeout
        while True:
            if self.etcd_proc.poll() is not None:
                raise APIServerError("etcd exited %s: %s" % (self.etcd_proc.returncode,
                                                             self.log_tail("etcd")))
            if self.etcdctl("endpoint", "health", check=False).returncode == 0:
                return
            if time.monotonic() > deadline:
                raise APIServerError("etcd not healthy after %ss: %s" % (timeout,
                                                                         self.log_tail("etcd")))
            time.sleep(0.1)

    def stop_etcd(self):
        self._kill(self.etcd_proc)
        self.etcd_proc = None

    def etcdctl(self, *args, check=True):
        env = dict(os.environ, ETCDCTL_API="3")
        return _run(self._wrap([ETCDCTL, "--endpoints=" + self.etcd_url] + list(args)),
                    check=check, env=env, timeout=30)

    def etcd_revision(self):
        out = self.etcdctl("endpoint", "status", "-w", "json").stdout
        return int(json.loads(out)[0]["Status"]["header"]["revision"])

    def compact(self, revision=None):
        """Compacts etcd at `revision` (default: the current one), so any watch or list from an
        older resourceVersion gets 410 Gone. Returns the revision."""
        rev = revision or self.etcd_revision()
        self.etcdctl("compact", str(rev), "--physical")
        return rev

    # ---- the API server

    def apiserver_args(self):
        d = self.dir
        args = [
            "--etcd-servers=" + self.etcd_url,
            "--bind-address=" + self.address, "--advertise-address=" + self.address,
            "--secure-port=%d" % self.port,
            "--tls-cert-file=" + os.path.join(d, "serving.crt"),
            "--tls-private-key-file=" + os.path.join(d, "serving.key"),
            "--cert-dir=" + os.path.join(d, "certs"),
            "--client-ca-file=" + self.ca_file,
            "--service-account-issuer=https://kubernetes.default.svc",
            "--service-account-key-file=" + os.path.join(d, "sa.pub"),
            "--service-account-signing-key-file=" + os.path.join(d, "sa.key"),
            "--token-auth-file=" + os.path.join(d, "tokens.csv"),
            "--authorization-mode=RBAC",
            "--service-cluster-ip-range=" + SERVICE_CIDR,
            "--disable-admission-plugins=ServiceAccount",
            "--endpoint-reconciler-type=none",
            "--profiling=false",
        ]
        if not self.watch_cache:
            args.append("--watch-cache=false")
        return args + self.extra_args

    def _start_apiserver(self, timeout):
        # The admin kubeconfig (and any written before the port was known) name the port now.
        for path, (user, groups, token) in list(getattr(self, "_kubeconfigs", {}).items()):
            self.kubeconfig(path, user=user, groups=groups, token=token)
        self._ssl = None
        self.proc = self._spawn([self.binary] + self.apiserver_args(), "apiserver.log")
        self.wait_ready(timeout)

    def wait_ready(self, timeout=60):
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            if self.proc.poll() is not None:
                raise APIServerError("kube-apiserver exited %s: %s" % (self.proc.returncode,
                                                                       self.log_tail()))
            try:
                r = self.request("GET", "/readyz")
                if r.status == 200:
                    return
                last = "%d %s" % (r.status, r.body[-300:])
            except (OSError, http.client.HTTPException) as e:
                last = str(e)
            if time.monotonic() > deadline:
                raise APIServerError("kube-apiserver not ready after %ss (%s): %s"
                                     % (timeout, last, self.log_tail()))
            time.sleep(0.1)

    def stop_apiserver(self):
        self._kill(self.proc)
        self.proc = None

    def restart(self, down_seconds=0.0, timeout=60):
        """Stops the API server (SIGTERM, so open watches are cut), waits `down_seconds`, starts
        it again on the same port with the same etcd and certificates."""
        self.stop_apiserver()
        if down_seconds:
            time.sleep(down_seconds)
        self._start_apiserver(timeout)

    def start_apiserver(self, timeout=60):
        """Starts a stopped API server again (after stop_apiserver)."""
        self._start_apiserver(timeout)

    # ---- requests (the admin's token, over HTTPS; inside the namespace through a helper)

    def _context(self):
        if self._ssl is None:
            ctx = ssl.create_default_context(cafile=self.ca_file)
            ctx.check_hostname = False  # the certificate names the address; no DNS involved
            self._ssl = ctx
        return self._ssl

    def request(self, method, path, body=None, token=ADMIN_TOKEN, content_type=None,
                timeout=30):
        """One HTTPS request as the admin (or `token`); returns Response(status, body text).
        With netns set, it goes through a helper process inside that namespace."""
        if self.netns is not None:
            return self._request_in_netns(method, path, body, token, content_type, timeout)
        conn = http.client.HTTPSConnection(self.address, self.port, context=self._context(),
                                           timeout=timeout)
        try:
            headers = {"Authorization": "Bearer " + token, "Accept": "application/json"}
            data = None
            if body is not None:
                data = body if isinstance(body, (bytes, str)) else json.dumps(body)
                headers["Content-Type"] = content_type or "application/json"
            conn.request(method, path, body=data, headers=headers)
            r = conn.getresponse()
            return Response(r.status, r.read().decode(errors="replace"))
        finally:
            conn.close()

    def _request_in_netns(self, method, path, body, token, content_type, timeout):
        """Through one long-lived helper process inside the namespace (`apiserver.py _serve`:
        JSON requests and answers, one per line), started on first use."""
        req = {"method": method, "path": path, "token": token, "ca": self.ca_file,
               "host": self.address, "port": self.port, "timeout": timeout,
               "content_type": content_type or "application/json",
               "body": None if body is None else (
                   body if isinstance(body, str) else json.dumps(body))}
        for attempt in range(2):
            if self._helper is None or self._helper.poll() is not None:
                self._helper = subprocess.Popen(
                    self._wrap(["/usr/bin/python3", "-B", os.path.abspath(__file__), "_serve"]),
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                    start_new_session=True)
            try:
                self._helper.stdin.write(json.dumps(req) + "\n")
                self._helper.stdin.flush()
                line = self._helper.stdout.readline()
            except OSError:
                line = ""
            if line:
                out = json.loads(line)
                if "error" in out:
                    raise OSError(out["error"])
                return Response(out["status"], out["body"])
            self._stop_helper()
        raise APIServerError("the request helper in %s died" % self.netns)

    def _stop_helper(self):
        if self._helper is not None:
            try:
                self._helper.stdin.close()
            except OSError:
                pass
            self._kill(self._helper)
            self._helper = None

    def call(self, method, path, body=None, ok=(200, 201), **kw):
        """request() that raises APIServerError unless the status is in `ok`; returns the JSON."""
        r = self.request(method, path, body, **kw)
        if r.status not in ok:
            raise APIServerError("%s %s: %d %s" % (method, path, r.status, r.body.strip()))
        return r.json()

    def kubectl(self, *args, input=None, check=True, kubeconfig=None, timeout=60):
        """Runs kubectl (from PATH) against this API server, as the admin by default."""
        kc = shutil.which("kubectl")
        if kc is None:
            raise Unavailable("kubectl is not on PATH")
        env = dict(os.environ, HOME=self.dir, KUBECONFIG=kubeconfig or self.admin_kubeconfig)
        return _run(self._wrap([kc] + list(args)), input=input, check=check, env=env,
                    timeout=timeout)

    # ---- objects

    @staticmethod
    def _q(s):
        return urllib.parse.quote(s, safe="")

    def create_namespace(self, name, labels=None):
        return self.call("POST", "/api/v1/namespaces", {
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": dict(labels or {})}})

    def create_pod(self, namespace, name, labels=None, node=None, ips=(), phase="Running",
                   ports=(), host_network=False):
        """Creates a pod (spec.nodeName = node; one container serving `ports`: (number, name,
        protocol) or numbers) and, when `ips` or `phase` is given, writes its status through
        pods/status as the kubelet would. Returns the pod as the API server stored it."""
        cports = []
        for p in ports:
            if isinstance(p, int):
                p = (p, None, "TCP")
            num, pname, proto = (tuple(p) + (None, "TCP"))[:3]
            e = {"containerPort": num, "protocol": proto or "TCP"}
            if pname:
                e["name"] = pname
            cports.append(e)
        spec = {"containers": [{"name": "c", "image": "registry.invalid/netpol-test:1",
                                "ports": cports}]}
        if node:
            spec["nodeName"] = node
        if host_network:
            spec["hostNetwork"] = True
        pod = self.call("POST", "/api/v1/namespaces/%s/pods" % self._q(namespace), {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": dict(labels or {})},
            "spec": spec})
        if ips or phase:
            pod = self.set_pod_status(namespace, name, ips=ips, phase=phase)
        return pod

    def set_pod_status(self, namespace, name, ips=None, phase=None):
        """PATCHes pods/status (merge patch): status.podIP/podIPs from `ips` (first one is
        podIP; [] clears them), status.phase."""
        status = {}
        if ips is not None:
            status["podIPs"] = [{"ip": ip} for ip in ips] if ips else None
            status["podIP"] = ips[0] if ips else None
        if phase:
            status["phase"] = phase
        return self.call("PATCH", "/api/v1/namespaces/%s/pods/%s/status" % (
            self._q(namespace), self._q(name)), {"status": status},
            content_type="application/merge-patch+json")

    def label(self, kind, name, labels, namespace=None):
        """Replaces the labels of a pod or namespace (kind "pod"/"namespace") with `labels`, in
        one request (a JSON patch of metadata.labels). Returns the stored object."""
        return self.call("PATCH", self.object_path(kind, name, namespace),
                         [{"op": "add", "path": "/metadata/labels", "value": dict(labels)}],
                         content_type="application/json-patch+json")

    def object_path(self, kind, name, namespace=None):
        kind = kind.lower()
        if kind == "namespace":
            return "/api/v1/namespaces/%s" % self._q(name)
        if kind == "pod":
            return "/api/v1/namespaces/%s/pods/%s" % (self._q(namespace), self._q(name))
        if kind == "networkpolicy":
            return "/apis/networking.k8s.io/v1/namespaces/%s/networkpolicies/%s" % (
                self._q(namespace), self._q(name))
        raise ValueError("unknown kind %r" % kind)

    def delete(self, kind, name, namespace=None, grace_zero=True):
        """Deletes an object (pods with gracePeriodSeconds=0, since no kubelet finishes a graceful
        deletion). A missing object is fine."""
        path = self.object_path(kind, name, namespace)
        if kind.lower() == "pod" and grace_zero:
            path += "?gracePeriodSeconds=0"
        return self.call("DELETE", path, ok=(200, 202, 404))

    def apply_policy(self, policy):
        """Creates or updates a NetworkPolicy (a dict) in one request: server-side apply with this
        fixture's field manager, forced, so every field it gave before and omits now is removed
        (fields only another manager set stay; a policy's ingress/egress lists are atomic and
        replaced whole). Returns the stored object."""
        meta = policy["metadata"]
        path = self.object_path("networkpolicy", meta["name"], meta["namespace"])
        return self.call("PATCH", path + "?fieldManager=netpol-test&force=true", policy,
                         content_type="application/apply-patch+yaml")

    def create_token(self, serviceaccount, namespace, seconds=3600):
        """A token of ServiceAccount namespace/serviceaccount (TokenRequest, as `kubectl create
        token` does; the ServiceAccount must exist)."""
        out = self.call("POST", "/api/v1/namespaces/%s/serviceaccounts/%s/token" % (
            self._q(namespace), self._q(serviceaccount)), {
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"expirationSeconds": seconds}})
        return out["status"]["token"]

    def resource_version(self, path="/api/v1/namespaces"):
        """The current resourceVersion of a list (the API server's view of etcd's revision)."""
        return int(self.call("GET", path + ("&" if "?" in path else "?") + "limit=1")
                   ["metadata"]["resourceVersion"])


def _one_request(req):
    ctx = ssl.create_default_context(cafile=req["ca"])
    ctx.check_hostname = False
    conn = http.client.HTTPSConnection(req["host"], req["port"], context=ctx,
                                       timeout=req["timeout"])
    try:
        headers = {"Authorization": "Bearer " + req["token"], "Accept": "application/json"}
        if req["body"] is not None:
            headers["Content-Type"] = req["content_type"]
        conn.request(req["method"], req["path"], body=req["body"], headers=headers)
        r = conn.getresponse()
        return {"status": r.status, "body": r.read().decode(errors="replace")}
    finally:
        conn.close()


def _serve_main():
    """`apiserver.py _serve`: HTTPS requests described by JSON lines on stdin, answered by JSON
    lines on stdout ({"status", "body"} or {"error"}), until stdin closes. Runs inside the API
    server's network namespace for callers outside it."""
    for line in sys.stdin:
        try:
            out = _one_request(json.loads(line))
        except (OSError, http.client.HTTPException, ValueError) as e:
            out = {"error": "%s: %s" % (type(e).__name__, e)}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    if sys.argv[1:2] == ["_serve"]:
        _serve_main()
    elif sys.argv[1:2] == ["serve"]:
        # By hand: start one and keep it until Ctrl-C, printing how to reach it.
        with APIServer() as api:
            print("API server %s (CA %s); admin kubeconfig %s" % (api.url, api.ca_file,
                                                                   api.admin_kubeconfig))
            try:
                signal.pause()
            except KeyboardInterrupt:
                pass
    else:
        print("usage: apiserver.py serve", file=sys.stderr)
        sys.exit(2)
